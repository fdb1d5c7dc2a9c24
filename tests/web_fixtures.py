"""Fixtures for the ``sens web`` tests: Debian's chromium driven by Playwright (never
``playwright install``: the browser is /usr/bin/chromium), a real ``sens web`` process, and the
directory screenshots go to."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service_fixtures import sens_argv

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("SENS_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parent / "artifacts")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless chromium for the module's tests."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is not installed (scripts/apt-packages.txt)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh page (1400x900) that fails the test on a script error or an alert."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    def dialog(d: Any) -> None:
        problems.append(f"a dialog opened: {d.message}")
        d.dismiss()

    pg.on("dialog", dialog)
    pg.problems = problems
    try:
        yield pg
    finally:
        context.close()
    assert not problems, problems


class WebServer:
    """A ``sens web`` process; ``url`` is what it printed (with the token, if any)."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        argv = sens_argv("web", "--listen", "127.0.0.1:0", *args)
        if any(a == "--listen" for a in args):
            argv = sens_argv("web", *args)
        self.proc = subprocess.Popen(argv, env=dict(os.environ) | (env or {}),
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.stop()
            raise AssertionError(f"sens web did not start: {err}")
        m = re.search(r"(https?://\S+)", line)
        assert m, line
        self.url = m.group(1)
        self.base = self.url.split("?")[0]

    def stop(self) -> int:
        """SIGTERM, then wait (kill if it hangs); the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        return self.proc.returncode

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def publish(*args: str, events: list[dict[str, Any]] | None = None) -> None:
    """``sens publish ARGS`` (or ``--json -`` with ``events``), through the running daemon."""
    if events is not None:
        text = "".join(json.dumps(e) + "\n" for e in events)
        r = subprocess.run(sens_argv("publish", "--json", "-"), input=text, text=True,
                           capture_output=True, timeout=30)
    else:
        r = subprocess.run(sens_argv("publish", *args), text=True, capture_output=True,
                           timeout=30)
    assert r.returncode == 0, r.stderr


def ready(pg: Any, url: str) -> None:
    """Open ``url`` and wait for the first picture."""
    pg.goto(url)
    pg.wait_for_selector("body[data-ready='1']", timeout=10_000)


def wait_until(check: Any, what: str, limit: float = 20.0) -> None:
    """Poll ``check()`` (a hang guard, not a timing assertion)."""
    end = time.monotonic() + limit
    while not check():
        assert time.monotonic() < end, f"gave up waiting for {what}"
        time.sleep(0.05)


def artifact(name: str) -> Path:
    """Where a screenshot named ``name`` goes (the directory is made)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / name
