"""Serve the demo app in the foreground: ``python -m pytest_sop.demo`` (or ``pytest-sop demo``)."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

from . import PASSWORD_ENV, PORT_ENV, demo_accounts
from .server import make_server


def _account(value: str) -> tuple[str, str]:
    username, sep, password = value.partition(":")
    if not sep or not username:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return username, password


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one, printed)")
    parser.add_argument(
        "--publish-delay", type=float, default=1.0, metavar="SECONDS", help="how long a new post is 'Processing…'"
    )
    parser.add_argument(
        "--account",
        type=_account,
        action="append",
        metavar="USER:PASSWORD",
        help="repeatable; replaces the demo accounts pub1 and pub2 (passwords: env "
        + ", ".join(PASSWORD_ENV.values())
        + ")",
    )
    parser.add_argument("--log-requests", action="store_true", help="one line per request on stderr")


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C (or SIGTERM's default: the process ends)."""
    accounts = dict(args.account) if args.account else demo_accounts()
    try:
        httpd = make_server(
            args.host, args.port, accounts=accounts, publish_delay=args.publish_delay, log_requests=args.log_requests
        )
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            print(f"pytest-sop demo: port {args.port} is in use: give another with --port N", file=sys.stderr)
        else:
            print(f"pytest-sop demo: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    host, port = httpd.server_address[:2]
    # Flushed: a script that starts the demo in the background reads the port from this line.
    print(f"Snapgram on http://{host!s}:{port}/  accounts: {', '.join(accounts)}  (Ctrl-C stops it)", flush=True)
    print(f"Point a suite at it with: export {PORT_ENV}={port}", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_sop.demo", description="Serve Snapgram, the demo app.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
