"""A local web server for the tests' own static pages, and a suite config driving them on Chromium."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from test_step_commands import WEB_CONFIG

APPS = Path(__file__).parent / "apps"


@contextmanager
def serving(folder: Path) -> Iterator[str]:
    """``folder`` served on a free local port: its base URL, ending in '/'."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=folder))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def web_config(url: str) -> str:
    """sop.yaml with one emulated Pixel 7 in headless Chromium, its app at ``url``."""
    return WEB_CONFIG.format(url=url)
