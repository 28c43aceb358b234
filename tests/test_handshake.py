"""autobahn formats its per-handshake debug text (29 settings through pprint) only while its debug logging is on
(chatweb/handshake.py, installed by the ASGI app)."""

from __future__ import annotations

import pprint

import txaio
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol  # chooses Twisted for txaio
from autobahn.websocket import protocol

import chatweb.asgi  # noqa: F401  (installs it, as under Daphne)


def test_the_settings_of_a_handshake_are_pretty_printed_only_for_debug_logging() -> None:
    factory = WebSocketServerFactory()
    names = WebSocketServerProtocol.CONFIG_ATTRS
    settings = [(name, getattr(factory, name), "WebSocketServerFactory") for name in names]
    assert len(pprint.pformat(settings).splitlines()) > 1  # what autobahn would make of them
    level = txaio.get_global_log_level()
    assert level not in ("debug", "trace")
    assert protocol.pformat(settings) == repr(settings)
    txaio.set_global_log_level("debug")
    try:
        assert protocol.pformat(settings) == pprint.pformat(settings)
    finally:
        txaio.set_global_log_level(level)
    assert protocol.pformat(settings) == repr(settings)
