"""Headless Chromium for page tests: Debian's `chromium` and `chromium-driver` packages
(`.ci/run` installs them), driven through WebDriver (Selenium, with the system driver: it
never downloads a browser). Where they are missing the test is skipped, on CI it fails."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
# Screenshots the browser tests keep (git-ignored), besides pytest's own tmp dirs.
ARTIFACTS = ROOT / "test-artifacts"

# No network but loopback here: the switches keep Chromium from calling home at start.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--window-size=1280,1600",
)


def need_chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    driver = shutil.which("chromedriver") or (CHROMEDRIVER if Path(CHROMEDRIVER).exists() else None)
    if browser is None or driver is None:
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are not installed: .ci/run installs them")
        pytest.skip(
            "chromium or chromedriver is not installed (apt-get install chromium chromium-driver)"
        )
    return browser, driver


@contextmanager
def chromium(profile: Path) -> Iterator[object]:
    """A WebDriver session of headless Chromium with a fresh profile under `profile`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = need_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(
        executable_path=driver_path, log_output=str(profile.parent / "chromedriver.log")
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()
