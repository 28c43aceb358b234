"""Timestamps from inside a Daphne serving /v1, for `bench/api_stages.py` (this folder is put on the server's
PYTHONPATH, so Python imports this module at start-up; it does nothing unless CHATWEB_STAGE_PROBE names a file).

It records, with `time.perf_counter()`: each step of the API view's task (Django's `ApiHandler._respond`), each
read of an asyncio socket (in this process only the upstream's connections are asyncio sockets: Daphne's own
are Twisted's), each write to one (the upstream request), and each piece of a response body handed to Daphne.
The events are written to the file as JSON when the process exits.
"""

import os
import sys

if os.environ.get("CHATWEB_STAGE_PROBE") and any("daphne" in arg for arg in sys.orig_argv):
    import asyncio
    import asyncio.events
    import asyncio.selector_events
    import atexit
    import itertools
    import json
    import time
    import weakref

    _events: list[tuple[str, float, float, int]] = []
    _clock = time.perf_counter
    _run = asyncio.events.Handle._run
    _write = asyncio.selector_events._SelectorSocketTransport.write
    _serials: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # a view task's number (ids are reused)
    _count = itertools.count()

    def _timed_run(handle: asyncio.events.Handle) -> None:
        start = _clock()
        _run(handle)
        callback = handle._callback
        owner = getattr(callback, "__self__", None)
        if isinstance(owner, asyncio.Task):
            if owner.get_coro().__qualname__.endswith("ApiHandler._respond"):
                end = _clock()
                if owner not in _serials:
                    _serials[owner] = next(_count)
                _events.append(("view", start, end, _serials[owner]))
        elif getattr(callback, "__qualname__", "").endswith("_SelectorSocketTransport._read_ready"):
            _events.append(("read", start, _clock(), 0))

    def _timed_write(transport, data) -> None:
        _events.append(("write", _clock(), 0.0, len(data)))
        _patch_daphne()
        return _write(transport, data)

    def _patch_daphne() -> None:
        from daphne.http_protocol import WebRequest

        if getattr(WebRequest, "_stage_probe", False):
            return
        handle_reply = WebRequest.handle_reply

        def timed_handle_reply(request, message):
            if message.get("type") == "http.response.body" and message.get("body"):
                _events.append(("body", _clock(), 0.0, len(message["body"])))
            return handle_reply(request, message)

        WebRequest.handle_reply = timed_handle_reply
        WebRequest._stage_probe = True

    def _dump() -> None:
        with open(os.environ["CHATWEB_STAGE_PROBE"], "w") as f:
            json.dump(_events, f)

    asyncio.events.Handle._run = _timed_run
    asyncio.selector_events._SelectorSocketTransport.write = _timed_write
    atexit.register(_dump)
