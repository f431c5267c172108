"""The pytest11 entry point ``sop``: the one place hooks are registered."""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import pytest

from . import hookspecs
from .actions import build_registry
from .appium_service import AppiumService, appium_key
from .collect import SopFile, SopItem, suite_key
from .config import addoption, resolve, settings_key
from .errors import SopInvalid
from .plan import plan_lines
from .suite import Suite, display_path
from .suiteconfig import load_config


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    addoption(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    settings = resolve(config)
    config.stash[settings_key] = settings
    config.stash[appium_key] = AppiumService(config)
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(XdistHooks(), "sop-xdist")
    if not settings.enabled:
        return
    if settings.dry_run:
        # A dry run touches no device, so it has nothing to spread over workers.
        config.option.numprocesses = None
        config.option.dist = "no"
    try:
        shown = display_path(settings.config_path, str(config.invocation_params.dir)) if settings.config_path else None
        suite_config = load_config(settings.config_path, shown)
    except SopInvalid as e:
        raise pytest.UsageError(f"invalid suite config:\n{e}") from None
    registry = build_registry(config.hook.pytest_sop_actions())
    root = os.path.dirname(settings.config_path) if settings.config_path else str(config.rootpath)
    config.stash[suite_key] = Suite(
        suite_config,
        registry,
        root,
        settings.patterns,
        base=str(config.invocation_params.dir),
        ignore=config.getini("norecursedirs"),
    )


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    if appium_key in config.stash:
        config.stash[appium_key].stop()


class XdistHooks:
    """Registered only when xdist is present: hand the managed Appium to workers."""

    def pytest_configure_node(self, node: Any) -> None:
        config = node.config
        settings = config.stash[settings_key]
        suite = config.stash.get(suite_key, None)
        if settings.enabled and suite is not None and config.stash[appium_key].wanted(suite.config) == "local":
            node.workerinput.update(config.stash[appium_key].worker_input())


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SopFile | None:
    if suite_key not in parent.config.stash:
        return None
    if parent.config.stash[suite_key].matches(file_path.name):
        return SopFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(isinstance(item, SopItem) for item in session.items):
        # The collected suite (items, SOP models) lives until the process ends: moving it out
        # of the collector's reach spares every later full collection from rescanning it.
        gc.freeze()


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session) -> bool | None:
    settings = session.config.stash[settings_key]
    if not (settings.enabled and settings.dry_run) or session.config.option.collectonly:
        return None
    suite = session.config.stash[suite_key]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter else print
    cases = [item for item in session.items if isinstance(item, SopItem)]
    write("")
    for item in cases:
        for line in plan_lines(item.case, suite.config):
            write(line)
    write(f"dry run: {len(cases)} case(s) planned, nothing was run")
    return True
