"""Pages in a real browser: Debian's Chromium driven by Playwright against the app under
gunicorn (production settings, plain HTTP on loopback), with screenshots kept for people."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.smtp import SmtpServer
from tests.appserver import AppServer, start_app_server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
# Without the background-networking flags Chromium keeps trying hosts this machine can't reach.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def site_sink():
    """Where the site's own mail (password resets) goes."""
    sink = SmtpServer().start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def web(tmp_path_factory, site_sink) -> AppServer:
    """The app for browser tests. Cookies are not Secure here: the test server speaks plain
    HTTP on loopback (production keeps them Secure)."""
    server = start_app_server(
        tmp_path_factory.mktemp("web"), workers=2,
        SESSION_COOKIE_SECURE="false", CSRF_COOKIE_SECURE="false",
        MAIL_PROVIDER_URLS=f"smtp://127.0.0.1:{site_sink.port}?security=none",
        DEFAULT_FROM_EMAIL="emailservice <no-reply@example.com>",
    )  # fmt: skip
    yield server
    server.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    # Playwright waits for each element or navigation; its deadline only catches a hang, and a
    # loaded machine must not hit it.
    context.set_default_timeout(90_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.console_errors = errors
    yield page
    context.close()


PASSWORD = "a long pass phrase 77"


def create_user(web: AppServer, username: str, password: str = PASSWORD) -> str:
    """A user with a known password and email on the live server's database."""
    web.factory("account", username, "--password", password)
    return username


def log_in(page, web: AppServer, username: str, password: str = PASSWORD) -> None:
    """Through the login page, as a person would."""
    page.goto(f"{web.url}/accounts/login/")
    page.locator("input[name=username]").fill(username)
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under test-artifacts/screenshots/ (ignored by git)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
