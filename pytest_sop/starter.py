"""Where a suite starts: finding its ``sop.yaml``, and ``pytest-sop init`` writing a first one.

The files ``init`` writes are package data in ``starter_kit/``: a suite of their own, so
``pytest-sop lint`` checks them like any other.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from importlib import resources

CONFIG_NAME = "sop.yaml"
#: What ``init`` writes, as paths relative to the folder it writes into (and to ``starter_kit/``).
KIT_FILES = ("sop.yaml", "sops/sign-in.sop.yaml", "pytest.ini", "package.json")
#: The demo's port and first account's password, as the kit's sop.yaml reads them.
DEMO_PORT = 8765


def find_config(start: str) -> str | None:
    """The nearest ``sop.yaml`` in ``start`` (a folder, or a file's folder) or a folder above it."""
    folder = os.path.abspath(start if os.path.isdir(start) else os.path.dirname(start) or ".")
    while True:
        candidate = os.path.join(folder, CONFIG_NAME)
        # exists, not isfile: a FIFO or unreadable sop.yaml is reported, never passed over.
        if os.path.exists(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def no_config_message(looked: list[str]) -> str:
    """What a command that needs a suite config says when there is none: where it looked, what to do."""
    above = "every folder above it" if len(looked) == 1 else "the folders above them"
    return f"no {CONFIG_NAME} found (looked in {', '.join(looked)} and {above}); run pytest-sop init"


class InitRefused(Exception):
    """``init`` wrote nothing: the message says why."""


def kit_text(name: str) -> str:
    return resources.files("pytest_sop").joinpath("starter_kit", *name.split("/")).read_text(encoding="utf-8")


def write_starter(folder: str) -> list[str]:
    """Write the starter kit into ``folder`` (made if missing); the paths written.

    :raises InitRefused: a file it would write exists (all of them are named), or one cannot be
        written; then nothing is left behind.
    """
    targets = [os.path.join(folder, *name.split("/")) for name in KIT_FILES]
    existing = [t for t in targets if os.path.lexists(t)]
    if existing:
        raise InitRefused(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: nothing was written"
        )
    texts = [kit_text(name) for name in KIT_FILES]
    written: list[str] = []
    made: list[str] = []  # folders made here, removed again if a file cannot be written
    try:
        for target, text in zip(targets, texts, strict=True):
            _make_folders(os.path.dirname(target) or ".", made)
            # "x": a file that appeared since the check above is never overwritten.
            with open(target, "x", encoding="utf-8") as f:
                written.append(target)
                f.write(text)
    except OSError as e:
        for path in written:
            os.remove(path)
        for path in reversed(made):
            with contextlib.suppress(OSError):
                os.rmdir(path)
        raise InitRefused(f"cannot write {e.filename}: {e.strerror or e}: nothing was written") from None
    return written


def _make_folders(folder: str, made: list[str]) -> None:
    missing: list[str] = []
    while not os.path.isdir(folder) and folder not in missing:
        missing.append(folder)
        folder = os.path.dirname(folder) or "."
    for path in reversed(missing):
        os.mkdir(path)
        made.append(path)


def next_steps(folder: str) -> str:
    """The commands that run the starter suite, as ``init`` prints them."""
    cd = "" if os.path.abspath(folder) == os.getcwd() else f"  cd {shlex.quote(folder)}\n"
    return (
        f"Wrote a starter suite in {folder}:\n"
        "  sop.yaml                the phone (Chromium emulating a Pixel 7), the demo app and its account\n"
        "  sops/sign-in.sop.yaml   your first SOP\n"
        "  pytest.ini              pytest-sop settings (this folder is pytest's rootdir)\n"
        "  package.json            Appium 3 and its Chromium driver\n"
        "\n"
        "Run it (needs Node.js 20+, Chromium and chromedriver; Debian: apt install chromium chromium-driver):\n"
        f"{cd}"
        "  npm install                      # Appium, into ./node_modules\n"
        f"  pytest-sop demo --port {DEMO_PORT} &    # the demo app, Snapgram (stop it: kill %1)\n"
        f"  SNAPGRAM_PORT={DEMO_PORT} SNAPGRAM_PUB1_PASSWORD=pub1-demo-pass pytest --sop -v\n"
    )
