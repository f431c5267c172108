"""Helpers shared by the tests: a small suite config and writing SOP files into pytester."""

from __future__ import annotations

import textwrap

import pytest

SOP_YAML = """\
apps:
  social:
    capabilities: {platformName: Android, "appium:appPackage": com.example.social}
devices:
  - id: pixel-a
    platform: android
    tags: [phone]
  - id: pixel-b
    platform: android
    tags: [phone, eu]
accounts:
  - id: publisher-1
    role: publisher
    devices: [pixel-a]
    fields: {username: pub1, password: {env: PUB1_PASSWORD}}
  - id: publisher-2
    role: publisher
    fields: {username: pub2, password: {env: PUB2_PASSWORD}}
  - id: viewer-1
    role: viewer
    fields: {username: view1}
"""


def write_suite(pytester: pytest.Pytester, files: dict[str, str], config: str = SOP_YAML) -> None:
    pytester.makefile(".yaml", sop=config)
    for name, text in files.items():
        path = pytester.path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
