"""pytest collection: a SOP file is a ``SopFile``; each case is a ``SopItem``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .errors import SopError
from .model import Case
from .suite import Suite

suite_key = pytest.StashKey[Suite]()


class SopFile(pytest.File):
    def collect(self) -> Iterator[SopItem]:
        suite = self.config.stash[suite_key]
        result = suite.result(str(self.path))
        if result.errors:
            raise SopCollectError("\n".join(e.format() for e in result.errors))
        for case in result.cases:
            yield SopItem.from_parent(self, name=case.name, case=case)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        if isinstance(excinfo.value, SopError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)


class SopCollectError(SopError):
    """All errors of one SOP file, shown as ``FILE:LINE:COLUMN: field: message`` lines."""


class SopItem(pytest.Item):
    def __init__(self, *, case: Case, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        for tag in case.sop.tags:
            # Registering the tag as a marker keeps --strict-markers happy.
            self.config.addinivalue_line("markers", f"{tag}: SOP tag")
            self.add_marker(getattr(pytest.mark, tag))

    def runtest(self) -> None:
        from .runner import run_item

        run_item(self)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, self.case.sop.pos.line - 1, f"SOP {self.name}"
