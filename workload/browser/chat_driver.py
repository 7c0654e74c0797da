"""Drive the RAG service's chat page (GET /ui) in headless Chromium and read what it measured.

The page keeps one record per question in ``window.ragbenchChat.runs`` (raw ``performance.now()``
timestamps in milliseconds; workload/service/static/chat.js); this module asks questions through the
page's own form, as a person would, and returns those records. Playwright drives the system's
Chromium (``/usr/bin/chromium``, or $RAGBENCH_CHROMIUM); it never downloads a browser.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from workload.errors import StepError

CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> Path:
    return Path(os.environ.get("RAGBENCH_CHROMIUM") or "/usr/bin/chromium")


class ChatPage:
    """The chat page of one service, open in a browser tab."""

    def __init__(self, page) -> None:
        self.page = page

    def set_token(self, token: str | None) -> None:
        self.page.fill("#token", token or "")

    def now_ms(self) -> float:
        """The page's clock (performance.now()), the one its records use."""
        return float(self.page.evaluate("performance.now()"))

    def ask(self, question: str, *, k: int | None = None, max_tokens: int = 64, ignore_eos: bool = False,
            timeout_s: float = 120) -> dict[str, Any]:
        """Type the question, press Ask, wait until the page shows `done` or an error; the page's record.

        The page gives up by itself after ``timeout_s`` (it records a timeout); this waits a little longer
        so that a page that stops responding is an error here, never a hang."""
        page = self.page
        n = int(page.evaluate("window.ragbenchChat.runs.length"))
        page.fill("#question", question)
        if k is not None:  # else the page's default
            page.fill("#k", str(k))
        page.fill("#max-tokens", str(max_tokens))
        page.fill("#timeout-s", str(max(1, round(timeout_s))))
        page.set_checked("#ignore-eos", ignore_eos)
        page.click("#ask-button")
        try:
            page.wait_for_function("n => window.ragbenchChat.runs.length > n && window.ragbenchChat.runs[n].finished",
                                   arg=n, timeout=(timeout_s + 15) * 1000, polling=50)
        except Exception as exc:  # playwright's TimeoutError
            raise StepError(f"the chat page did not finish a question within {timeout_s + 15:.0f} s: {exc}") from None
        return page.evaluate("n => window.ragbenchChat.runs[n]", n)


@contextlib.contextmanager
def open_chat_page(base_url: str, token: str | None = None, nav_timeout_s: float = 30,
                   viewport: dict | None = None) -> Iterator[ChatPage]:
    """Headless Chromium with the service's chat page open and the token filled in."""
    chromium = chromium_path()
    if not chromium.exists():
        raise StepError(f"headless Chromium not found at {chromium} (install Debian's chromium, or set "
                        "RAGBENCH_CHROMIUM)")
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise StepError("the Python package playwright is not installed in this environment") from None
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport=viewport or {"width": 1000, "height": 900})
                page.set_default_timeout(nav_timeout_s * 1000)
                page.goto(f"{base_url.rstrip('/')}/ui", wait_until="load")
                page.wait_for_selector("body[data-ready=true]", state="attached")
                chat = ChatPage(page)
                chat.set_token(token)
                yield chat
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise StepError(f"the browser failed: {str(exc).splitlines()[0][:300]}") from None
