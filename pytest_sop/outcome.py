"""A failed case as a person reads it: the SOP's YAML around the failed step, what was expected and found."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StepFailed
from .runner import Failure


def yaml_excerpt(path: str, line: int, base: str, around: int = 2) -> list[str]:
    full = path if os.path.isabs(path) else os.path.join(base, path)
    try:
        lines = Path(full).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    start, end = max(1, line - around), min(len(lines), line + around)
    return [f"{'>' if n == line else ' '} {n:>4} | {lines[n - 1]}" for n in range(start, end + 1)]


def describe_failure(failure: Failure, message: str, base: str) -> str:
    pos = failure.step.pos
    what = getattr(failure.step, "action", None) or f"done_when {getattr(failure.step, 'kind', '')}"
    out = [f"{pos.file}:{pos.line}: {what} failed in SOP {failure.sop.id!r}", ""]
    out += yaml_excerpt(pos.file, pos.line, base)
    out.append("")
    out.append(message)
    err = failure.error
    if isinstance(err, StepFailed):
        if err.expected:
            out.append(f"  expected: {err.expected}")
        if err.found:
            out.append(f"  found:    {err.found}")
    if failure.optional_failures:
        out += ["", "optional steps that failed before it:"] + [f"  {line}" for line in failure.optional_failures]
    if failure.note:
        out += ["", failure.note]
    return "\n".join(out)
