"""One real `corral server` (embedded default: loopback, SQLite, a local worker) and one Chromium per
module. Chromium is Debian's (setup.sh --test); Playwright drives it through executable_path."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--headless=new"]
ARTIFACTS = Path(__file__).parent / "artifacts"  # screenshots of every page (gitignored)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("ui-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(
        {
            "CORRAL_HOME": str(home),
            "CORRAL_PORT": "0",
            "CORRAL_URL_FILE": str(home / "server.url"),
            "CORRAL_LOCAL_WORKERS": "1",
            "CORRAL_LOCAL_WORKER_CORES": "4",
            "CORRAL_LOCAL_WORKER_MEMORY": "4Gi",
            "CORRAL_HEARTBEAT_INTERVAL": "0.5",
            "CORRAL_COST_PER_CORE_HOUR": "0.5",
        }
    )
    running = RunningServer(home, env)
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("Debian's chromium is required in CI: scripts/setup.sh --test installs it")
        pytest.skip("chromium not installed (scripts/setup.sh --test)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def gates() -> Iterator[Path]:
    """Files a job waits for: under /var/tmp, which the job sandbox sees (its /tmp is private)."""
    folder = Path(tempfile.mkdtemp(prefix="corral-ui-gates-", dir="/var/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Emptied once per test run, shared by every browser test module."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


class Tab:
    """A browser page with its console errors collected."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base + path)


@pytest.fixture
def tab(browser: Any, server: RunningServer) -> Iterator[Tab]:
    """Logged in as the local user: on the embedded default, opening /ui/login is logging in."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    t = Tab(page, server.url)
    t.goto("/ui/login")
    yield t
    context.close()


def unique() -> str:
    return uuid.uuid4().hex[:8]
