"""The example suite serves its own demo app, Snapgram, for the whole run.

On a free port, or on SNAPGRAM_PORT when that is set; sop.yaml finds it through
``${env.SNAPGRAM_PORT}``, which xdist workers inherit from this process. When Snapgram already
answers on SNAPGRAM_PORT (scripts/demo-handoff starts one with ``python -m pytest_sop.demo``),
the run uses that one instead: a case paused in one run and resumed in the next must come back
to the same app, with its accounts' sessions and posts, at the same address.

SNAPGRAM_PUBLISH_DELAY (seconds, default 1) is how long a new post shows "Processing…": the
project's tests set it longer, so publish-post sees that state on a slow, loaded machine too.
"""

from __future__ import annotations

import errno
import http.client
import math
import os

import pytest

from pytest_sop.demo import DEMO_PASSWORDS, PORT_ENV, DemoServer, demo_accounts, serve

PUBLISH_DELAY_ENV = "SNAPGRAM_PUBLISH_DELAY"
_server_key = pytest.StashKey[DemoServer]()
_port_was_key = pytest.StashKey["str | None"]()


def snapgram_answers(port: int, timeout: float = 10.0) -> bool:
    """Whether what listens on ``port`` is Snapgram: its health page, from its own server."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)  # no proxy: it is this host
    try:
        conn.request("GET", "/__health")
        response = conn.getresponse()
        server = response.getheader("Server") or ""
        return response.status == 200 and server.startswith("Snapgram/") and response.read() == b"ok"
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def publish_delay() -> float:
    """SNAPGRAM_PUBLISH_DELAY in seconds, else the demo's 1 s."""
    given = os.environ.get(PUBLISH_DELAY_ENV, "1")
    try:
        delay = float(given)
    except ValueError:
        delay = math.nan
    if not (math.isfinite(delay) and delay >= 0):
        raise pytest.UsageError(f"{PUBLISH_DELAY_ENV}={given!r}: expected a number of seconds, 0 or more")
    return delay


def pytest_configure(config: pytest.Config) -> None:
    # Demo passwords, used when the environment does not set them (real suites never do this).
    for name, value in DEMO_PASSWORDS.items():
        os.environ.setdefault(name, value)
    if hasattr(config, "workerinput"):
        return  # xdist workers share the controller's app, and so its per-account state
    wanted = os.environ.get(PORT_ENV, "0")
    delay = publish_delay()
    try:
        server = serve(port=int(wanted), accounts=demo_accounts(), publish_delay=delay)
    except (ValueError, OverflowError):
        raise pytest.UsageError(f"{PORT_ENV}={wanted!r}: expected a port number") from None
    except OSError as e:
        if e.errno == errno.EADDRINUSE and snapgram_answers(int(wanted)):
            return  # an app that outlives this run; it is not this run's to stop
        busy = "is in use" if e.errno == errno.EADDRINUSE else f"cannot be used ({e.strerror or e})"
        raise pytest.UsageError(
            f"the demo app's port {PORT_ENV}={wanted} {busy}: set another, or unset it for a free one"
        ) from None
    config.stash[_server_key] = server
    config.stash[_port_was_key] = os.environ.get(PORT_ENV)
    os.environ[PORT_ENV] = str(server.port)


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_server_key, None)
    if server is not None:
        server.close()
        was = config.stash[_port_was_key]
        if was is None:
            os.environ.pop(PORT_ENV, None)
        else:
            os.environ[PORT_ENV] = was
