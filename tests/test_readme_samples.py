"""README samples match what the tool really prints."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def _first_sop_sample() -> tuple[str, str]:
    """The README's first SOP (the ```yaml block under "Your first SOP") and its sample lint line."""
    text = README.read_text()
    sop = re.search(r"```yaml\n(# sign-in\.sop\.yaml\n.*?)```", text, re.S)
    sample = re.search(r"^(sign-in\.sop\.yaml:\d+:\d+: .*tapp.*)$", text, re.M)
    assert sop and sample, "README's first SOP or its sample error moved: update this test"
    return sop.group(1), sample.group(1)


def test_readme_sample_error_is_what_lint_prints(tmp_path: Path) -> None:
    """The README's SOP, written as shown with its ``tap`` step misspelt ``tapp``, lints to the README's line."""
    sop, sample = _first_sop_sample()
    assert "  - tap: {text: Sign in}\n" in sop
    (tmp_path / "sign-in.sop.yaml").write_text(sop.replace("  - tap: {text: Sign in}", "  - tapp: {text: Sign in}"))
    # The example suite's config has the README's app (snapgram) and a publisher account.
    shutil.copy(ROOT / "example_suite" / "sop.yaml", tmp_path / "sop.yaml")
    done = subprocess.run(
        [sys.executable, "-m", "pytest_sop", "lint", "sign-in.sop.yaml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines() == [sample]
