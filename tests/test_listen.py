"""Daphne's accept queue holds a burst of new clients: with the process unable to accept anything (stopped), every
one of BURST connections still completes its TCP handshake, which Twisted's default backlog of 50 refused."""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import time

import pytest

from tests.live import LiveServer

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="Linux's accept queue")]

BURST = 300


def handshakes_completed(port: int, count: int, wait: float) -> int:
    """Open `count` connections at once without anyone accepting them; how many completed within `wait` s."""
    selector = selectors.DefaultSelector()
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            selector.register(s, selectors.EVENT_WRITE)
            sockets.append(s)
        done: set[socket.socket] = set()
        deadline = time.monotonic() + wait
        while len(done) < count and (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(left):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    done.add(s)
                selector.unregister(s)
        return len(done)
    finally:
        for s in sockets:
            s.close()
        selector.close()


@pytest.mark.django_db(transaction=True)
def test_a_burst_of_new_connections_waits_in_the_accept_queue_instead_of_being_dropped() -> None:
    server = LiveServer()
    try:
        os.kill(server.pid, signal.SIGSTOP)  # the event loop accepts nothing: only the kernel's queue is left
        try:
            # Under a second: a dropped handshake is retried by TCP after one.
            assert handshakes_completed(server.port, BURST, wait=0.8) == BURST
        finally:
            os.kill(server.pid, signal.SIGCONT)
    finally:
        server.stop()
