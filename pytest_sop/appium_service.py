"""Which Appium endpoint a device uses, and the one managed server of a test run.

The controlling process starts the managed server (``server: local``); xdist workers get its
URL and log path through ``workerinput``. Only plain data crosses that line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from .appium_server import AppiumNotFound, ManagedAppium, find_appium_home
from .config import settings_key
from .model import Device, SuiteConfig

URL_KEY = "sop_appium_url"
LOG_KEY = "sop_appium_log"


class AppiumService:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.managed: ManagedAppium | None = None
        workerinput = getattr(config, "workerinput", None)
        self.url: str | None = workerinput.get(URL_KEY) if workerinput else None
        log = workerinput.get(LOG_KEY) if workerinput else None
        self.log_path: Path | None = Path(log) if log else None

    def wanted(self, suite_config: SuiteConfig) -> str:
        """``local`` or the URL the run uses when a device names none."""
        return self.config.stash[settings_key].appium or suite_config.appium_server

    def endpoint(self, device: Device, suite_config: SuiteConfig) -> str:
        if device.server:
            return device.server
        wanted = self.wanted(suite_config)
        return self.local_url() if wanted == "local" else wanted

    def local_url(self) -> str:
        if self.url is None:
            home = find_appium_home(Path(self.config.rootpath))
            if home is None:
                raise AppiumNotFound(
                    "no Appium install found: run `npm ci` where package.json lists appium, "
                    "or set SOP_APPIUM_HOME to that folder"
                )
            from .collect import get_suite
            from .masking import mask_text, suite_secret_values

            secrets = suite_secret_values(get_suite(self.config).config)
            log_dir = Path(tempfile.mkdtemp(prefix="pytest-sop-appium-"))
            self.managed = ManagedAppium(home, log_dir / "appium.log", mask=lambda line: mask_text(line, secrets))
            self.url = self.managed.start()
            self.log_path = self.managed.log_path
        return self.url

    def worker_input(self) -> dict[str, str]:
        self.local_url()
        return {URL_KEY: self.url or "", LOG_KEY: str(self.log_path or "")}

    def stop(self) -> None:
        if self.managed is not None:
            self.managed.stop()
            self.managed = None


appium_key = pytest.StashKey[AppiumService]()
