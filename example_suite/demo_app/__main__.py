"""Run the demo app in the foreground: ``python -m example_suite.demo_app``."""

from __future__ import annotations

import argparse

from .server import DEFAULT_ACCOUNTS, make_server


def _account(value: str) -> tuple[str, str]:
    username, sep, password = value.partition(":")
    if not sep or not username:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return username, password


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m example_suite.demo_app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--publish-delay", type=float, default=1.0, metavar="SECONDS")
    parser.add_argument(
        "--account",
        type=_account,
        action="append",
        metavar="USER:PASSWORD",
        help="repeatable; replaces the default demo accounts",
    )
    args = parser.parse_args(argv)
    accounts = dict(args.account) if args.account else dict(DEFAULT_ACCOUNTS)
    httpd = make_server(
        args.host,
        args.port,
        accounts=accounts,
        publish_delay=args.publish_delay,
        log_requests=True,
    )
    host, port = httpd.server_address[:2]
    print(
        f"Snapgram on http://{host!s}:{port}/  accounts: {', '.join(accounts)}",
        flush=True,
    )
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()
