"""The example suite serves its own demo app, Snapgram, on 127.0.0.1:8765 for the whole run."""

from __future__ import annotations

import os

import pytest
from demo_app import DemoServer, serve

# Demo passwords, used when the environment does not set them (real suites never do this).
DEMO_PASSWORDS = {"SNAPGRAM_PUB1_PASSWORD": "pub1-demo-pass", "SNAPGRAM_PUB2_PASSWORD": "pub2-demo-pass"}
_server_key = pytest.StashKey[DemoServer]()
PORT = int(os.environ.get("SNAPGRAM_PORT", "8765"))


def pytest_configure(config: pytest.Config) -> None:
    for name, value in DEMO_PASSWORDS.items():
        os.environ.setdefault(name, value)
    if hasattr(config, "workerinput"):
        return  # xdist workers share the controller's app, and so its per-account state
    accounts = {"pub1": os.environ["SNAPGRAM_PUB1_PASSWORD"], "pub2": os.environ["SNAPGRAM_PUB2_PASSWORD"]}
    config.stash[_server_key] = serve(port=PORT, accounts=accounts)


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_server_key, None)
    if server is not None:
        server.close()
