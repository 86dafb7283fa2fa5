"""Driving the `store-hf app` page in headless Chromium (tests/test_app.py, benchmarks/app.py).

Debian's `chromium` (`make test` installs it) through Playwright; a missing browser is an error,
never a skip, so that CI cannot pass without the browser test.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = os.environ.get("STORE_HF_CHROMIUM", "/usr/bin/chromium")

#: root needs no sandbox; no background connections (the machine's network is closed)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``store-hf app PATH`` in a child process, answering on ``url`` until the ``with`` ends."""

    def __init__(self, path: str | os.PathLike, log: str | os.PathLike, timeout: float = 300):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = open(log, "w")  # noqa: SIM115 (closed by __exit__)
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
        cmd = [sys.executable, "-m", "store_hf", "app", str(path), "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError(f"the app exited: {Path(log).read_text()[-3000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.5)
        self.__exit__()
        raise TimeoutError(Path(log).read_text()[-3000:])

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


@contextlib.contextmanager
def chromium() -> Iterator:
    """A headless Chromium (Playwright ``Browser``)."""
    if not Path(CHROMIUM).is_file():
        raise FileNotFoundError(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium "
            "(or set STORE_HF_CHROMIUM to a Chromium binary)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def pick(page, element: str, typed: str, label: str) -> None:
    """Type ``typed`` into the dropdown ``#element`` key by key, as a person does, and click
    the option labelled ``label``."""
    box = page.locator(f"#{element} input").first
    box.click()
    box.press_sequentially(typed, delay=20)
    option = page.get_by_role("option", name=label, exact=True)
    option.wait_for()
    page.wait_for_timeout(300)  # the list re-renders while it filters
    option.click()
    page.keyboard.press("Escape")


def shown_items(page) -> list[str]:
    """The item ids of the recommendation table, top first."""
    return page.locator("#recommendations tr[data-item]").evaluate_all(
        "rows => rows.map(r => r.dataset.item)"
    )


def pick_test_user(page, user: dict, titles: dict[str, str]) -> None:
    """Start from a test user's history and wait until the history box shows it."""
    pick(page, "test-user", user["user_id"], f"{user['user_id']} ({len(user['history'])} items)")
    last = titles.get(user["history"][-1], user["history"][-1])
    page.locator("#history").filter(has_text=last).wait_for()
