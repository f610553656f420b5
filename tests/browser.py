"""Debian's chromium driven by Playwright (no downloaded browser), for tests that need a
real browser."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager

from playwright.sync_api import sync_playwright

from engine.org import DEFAULT_DEMO_PASSWORD

CHROMIUM = os.environ.get("ND73_CHROMIUM", "/usr/bin/chromium")
# Without these flags chromium tries to reach Google's services, which this network refuses.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"]


@contextmanager
def chromium_page(width: int = 1280, height: int = 900):
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            yield page
        finally:
            browser.close()


def leave_and_forget(page) -> None:
    """Leave the page (its requests still under way can no longer set a cookie: a session
    cookie set after the next login page's would not match its form's token), then clear
    the cookies."""
    page.goto("about:blank")
    page.context.clear_cookies()


def sign_in(page, server, username: str, password: str = DEFAULT_DEMO_PASSWORD) -> None:
    """Sign in through the web app's login form, in a fresh session."""
    leave_and_forget(page)
    page.goto(f"{server.url}/login")
    page.get_by_label("Tên đăng nhập").fill(username)
    page.get_by_label("Mật khẩu").fill(password)
    page.get_by_role("button", name="Đăng nhập").click()
    page.wait_for_url(re.compile(r".*/$"))


def page_complaints(page) -> list[str]:
    """What the page says went wrong from now on (console errors and warnings, uncaught
    errors, failed requests), to assert it stays empty."""
    said: list[str] = []
    page.on("console", lambda m: said.append(f"{m.type}: {m.text}")
            if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: said.append(f"pageerror: {e}"))
    page.on("response", lambda r: said.append(f"{r.status} {r.url}")
            if r.status >= 400 else None)
    return said
