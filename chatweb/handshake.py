"""autobahn's websocket handshake under Daphne, without the debug text nobody reads.

For every new connection, autobahn's `WebSocketProtocol._connectionMade` pretty-prints its 29 settings with
`pprint.pformat` for a debug log line, whatever the log level: ~1.5 ms of the event loop's core per socket, as much
as the rest of the handshake (docs/benchmarks.md), and a class's burst of new sockets pays it a hundred times.
While autobahn's debug logging is off (txaio's level, `info` under Daphne), that module's `pformat` gives `repr`'s
one line instead; with it on, the pretty text as before.
"""

from __future__ import annotations

import pprint
from typing import Any

DEBUG_LEVELS = ("debug", "trace")


def _pformat_when_logged(obj: Any, *args: Any, **kwargs: Any) -> str:
    import txaio

    try:
        level = txaio.get_global_log_level()  # type: ignore[attr-defined]  # set by the chosen framework
    except RuntimeError:  # no framework chosen yet: say everything
        level = "debug"
    if level in DEBUG_LEVELS:
        return pprint.pformat(obj, *args, **kwargs)
    return repr(obj)


def quiet_handshake_debug_text() -> None:
    """Make autobahn's websocket protocol format its debug text only when its debug logging is on."""
    from autobahn.websocket import protocol

    protocol.pformat = _pformat_when_logged  # type: ignore[assignment]  # the module's own import of pprint's
