"""pytest collection: a SOP file is a ``SopFile``; each case is a ``SopItem``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .actions import build_registry
from .appium_server import session_log
from .appium_service import appium_key
from .config import settings_key
from .errors import AwaitingApproval, SopError, SopInvalid, StepBroken, StepFailed
from .matching import choose
from .model import Case
from .suite import Suite, display_path
from .suiteconfig import load_config

if TYPE_CHECKING:  # Appium and Selenium load only when a case runs, not on every pytest start
    from .runner import Context
    from .session import DeviceSession

suite_key = pytest.StashKey[Suite]()


def get_suite(config: pytest.Config) -> Suite:
    """The run's suite: sop.yaml and every SOP file beside it, loaded once and lazily."""
    if suite_key not in config.stash:
        settings = config.stash[settings_key]
        try:
            shown = (
                display_path(settings.config_path, str(config.invocation_params.dir)) if settings.config_path else None
            )
            suite_config = load_config(settings.config_path, shown)
        except SopInvalid as e:
            raise pytest.UsageError(f"invalid suite config:\n{e}") from None
        root = os.path.dirname(settings.config_path) if settings.config_path else str(config.rootpath)
        config.stash[suite_key] = Suite(
            suite_config,
            build_registry(config.hook.pytest_sop_actions()),
            root,
            settings.patterns,
            base=str(config.invocation_params.dir),
            ignore=config.getini("norecursedirs"),
        )
    return config.stash[suite_key]


_tags_key = pytest.StashKey[set[str]]()


class SopFile(pytest.File):
    def collect(self) -> Iterator[SopItem]:
        suite = get_suite(self.config)
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
        registered = self.config.stash.setdefault(_tags_key, set())
        for tag in case.sop.tags:
            if tag not in registered:  # registering the tag as a marker keeps --strict-markers happy
                self.config.addinivalue_line("markers", f"{tag}: SOP tag")
                registered.add(tag)
            self.add_marker(getattr(pytest.mark, tag))

    device_session: DeviceSession | None = None
    context: Context | None = None

    def setup(self) -> None:
        """Choose a device and account, then open the Appium session: trouble here is an error."""
        from .recorders import AllureRecorder
        from .runner import Context, Secrets
        from .session import DeviceSession, capabilities

        suite = get_suite(self.config)
        settings = self.config.stash[settings_key]
        device, account = choose(suite.config, self.case)
        app = suite.config.apps.get(self.case.sop.app) if self.case.sop.app else None
        secrets = Secrets()
        caps = capabilities(device, app, secrets.resolve)
        endpoint = self.config.stash[appium_key].endpoint(device, suite.config)
        self.device_session = DeviceSession.create(device, app, endpoint, caps)
        self.context = Context(
            case=self.case, session=self.device_session, device=device, account=account, secrets=secrets,
            recorder=AllureRecorder(), registry=suite.registry, get_sop=suite.get_sop,
            evidence=settings.evidence,
        )  # fmt: skip

    def runtest(self) -> None:
        from .runner import run_case

        assert self.context is not None
        try:
            run_case(self.context)
        except AwaitingApproval as e:
            pytest.skip(str(e))
        except (StepFailed, StepBroken):
            self.attach_appium_log()
            raise

    def attach_appium_log(self) -> None:
        service = self.config.stash[appium_key]
        if self.device_session is not None and self.context is not None and service.log_path is not None:
            text = session_log(service.log_path, self.device_session.session_id)
            if text:
                self.context.recorder.attach("appium log", self.context.secrets.mask(text), "text/plain", "log")

    def teardown(self) -> None:
        session, self.device_session = self.device_session, None
        if session is not None:
            session.quit()

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        from .outcome import describe_failure

        err = excinfo.value
        mask = self.context.secrets.mask if self.context else str
        if self.context is not None and self.context.failure is not None and isinstance(err, SopError):
            base = str(self.config.invocation_params.dir)
            return mask(describe_failure(self.context.failure, str(err), base))
        if isinstance(err, SopError):
            return mask(str(err))
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, self.case.sop.pos.line - 1, f"SOP {self.name}"
