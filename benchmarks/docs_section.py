"""Shared by the benchmarks: each one owns a ``## `` section of docs/benchmarks.md."""

from __future__ import annotations

import os
import re
from pathlib import Path


def write_section(path: Path, section: str, heading: re.Pattern[str]) -> None:
    """Replace the section whose heading matches ``heading``, keeping every other section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    match = heading.search(text)
    if match:
        following = re.search(r"^## ", text[match.end() :], re.MULTILINE)
        end = match.end() + following.start() if following else len(text)
        text = text[: match.start()] + section.rstrip("\n") + ("\n\n" if following else "\n") + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
