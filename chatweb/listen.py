"""The listening socket's backlog under Daphne: wide enough for a burst of new clients.

Daphne listens through Twisted, whose TCP endpoints take a backlog of 50 unless the endpoint string says
otherwise (`daphne -b HOST -p PORT` never does). While the event loop is busy, connections that completed their
handshake wait in that queue; beyond 50 the kernel drops the client's packets (ListenOverflows) and the client's
TCP tries again a second later, then three: a class of 100 pressing Send at once, or a script opening 500 /v1
requests, saw its first tokens a second or more late, whatever the server did with the rest of its time.
"""

from __future__ import annotations

import sys
from typing import Any

LISTEN_BACKLOG = 4096  # the kernel caps it at net.core.somaxconn (4096 on current Linux)


def widen_listen_backlog(backlog: int = LISTEN_BACKLOG) -> None:
    """When running under Twisted's reactor (Daphne), give every TCP port it listens on `backlog`, as soon as the
    reactor runs (Daphne opens its ports just before). Elsewhere (tests, management commands): nothing."""
    if "twisted.internet.reactor" not in sys.modules:
        return
    from twisted.internet import reactor as installed
    from twisted.internet import tcp

    reactor: Any = installed  # the module stands for the installed reactor (asyncio's, under Daphne)

    def widen() -> None:
        for reader in reactor.getReaders():
            if isinstance(reader, tcp.Port) and reader.socket is not None:
                reader.socket.listen(backlog)  # listen() again on a listening socket only resizes its queue

    reactor.callWhenRunning(widen)
