"""Which Appium endpoint a device uses, and the one managed server of a test run.

The controlling process finds Appium (:func:`~pytest_sop.appium_server.find_appium`) and starts
the managed server (``server: local``); xdist workers get its URL, log path and what was found
(for the driver check) through ``workerinput``. Only plain data crosses that line.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from . import appium_server, masking
from .appium_server import AppiumInstall, AppiumNotFound, ManagedAppium, find_appium
from .config import settings_key
from .model import Device, SuiteConfig

URL_KEY = "sop_appium_url"
LOG_KEY = "sop_appium_log"
INSTALL_KEY = "sop_appium_install"


def automation_name(device: Device) -> Any:
    caps = device.capabilities
    return caps.get("appium:automationName", caps.get("automationName"))


class AppiumService:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.managed: ManagedAppium | None = None
        workerinput = getattr(config, "workerinput", None)
        self.url: str | None = workerinput.get(URL_KEY) if workerinput else None
        log = workerinput.get(LOG_KEY) if workerinput else None
        self.log_path: Path | None = Path(log) if log else None
        found = workerinput.get(INSTALL_KEY) if workerinput else None
        #: The Appium a managed server runs, once found (the controller's, on a worker).
        self.install: AppiumInstall | None = AppiumInstall.from_plain(found) if found else None
        self._not_found: str | None = None
        self._temp: Path | None = None
        appium_server.profile_root = self.profile_dir

    def temp_dir(self) -> Path:
        """This process's temporary folder for the run (Appium's log and TMPDIR, browser profiles),
        made on first use and removed when the run ends."""
        if self._temp is None:
            self._temp = Path(tempfile.mkdtemp(prefix="pytest-sop-run-"))
        return self._temp

    def profile_dir(self) -> str:
        """A new, empty browser profile folder inside :meth:`temp_dir`."""
        profiles = self.temp_dir() / "profiles"
        profiles.mkdir(exist_ok=True)
        return tempfile.mkdtemp(prefix="chromium-", dir=profiles)

    def wanted(self, suite_config: SuiteConfig) -> str:
        """``local`` or the URL the run uses when a device names none."""
        return self.config.stash[settings_key].appium or suite_config.appium_server

    def endpoint(self, device: Device, suite_config: SuiteConfig) -> str:
        if device.server:
            return device.server
        wanted = self.wanted(suite_config)
        if wanted != "local":
            return wanted
        # Before the server starts: a missing driver is said plainly, not as Appium's session error.
        problem = self.appium(suite_config).missing_driver(automation_name(device), device.id)
        if problem:
            raise AppiumNotFound(problem)
        return self.local_url()

    def appium(self, suite_config: SuiteConfig) -> AppiumInstall:
        """The Appium the managed server runs, looked for once per run (a failure too)."""
        if self.install is None:
            if self._not_found is not None:
                raise AppiumNotFound(self._not_found)
            needs = [a for d in suite_config.devices if not d.server and isinstance(a := automation_name(d), str)]
            try:
                self.install = find_appium(Path(self.config.rootpath), needs)
            except AppiumNotFound as e:
                self._not_found = str(e)
                raise
        return self.install

    def local_url(self) -> str:
        if self.url is None:
            from .collect import get_suite

            install = self.appium(get_suite(self.config).config)
            # Appium logs every request: it must know every secret the run can reveal before the first one.
            enabled = self.config.stash[settings_key].enabled
            masking.remember(masking.run_secret_values(get_suite(self.config), sops=enabled))
            temp = self.temp_dir()
            self.managed = ManagedAppium(install, temp / "appium.log", mask=masking.mask, tmpdir=temp / "appium-tmp")
            self.url = self.managed.start()
            self.log_path = self.managed.log_path
        return self.url

    def worker_input(self) -> dict[str, Any]:
        self.local_url()
        found = self.install.to_plain() if self.install else None
        return {URL_KEY: self.url or "", LOG_KEY: str(self.log_path or ""), INSTALL_KEY: found}

    def stop(self) -> None:
        try:
            if self.managed is not None:
                self.managed.stop()
                self.managed = None
        finally:
            if appium_server.profile_root == self.profile_dir:
                appium_server.profile_root = None
            if self._temp is not None:
                shutil.rmtree(self._temp, ignore_errors=True)
                self._temp = None


appium_key = pytest.StashKey[AppiumService]()
