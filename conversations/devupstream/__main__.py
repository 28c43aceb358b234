"""`python -m conversations.devupstream`: serve the development upstream without Django."""

from __future__ import annotations

import argparse

from .app import OPTIONS_ENV, parse_options
from .server import DEFAULT_HOST, DEFAULT_PORT, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m conversations.devupstream", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--delay", type=float, default=None, help="seconds between tokens (e.g. 0.02)")
    parser.add_argument(
        "--options",
        default="",
        help=f"server-wide switches, e.g. 'delay=0.02,dialect=groq' (over ${OPTIONS_ENV})",
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    try:
        defaults = dict(parse_options(args.options))
    except ValueError as exc:
        parser.error(str(exc))
    if args.delay is not None:
        defaults["delay"] = args.delay
    run(args.host, args.port, log_level=args.log_level, **defaults)


if __name__ == "__main__":
    main()
