"""Provider, health and API token pages in Debian's Chromium against the app under gunicorn,
with real SMTP sinks: add, edit, reorder and test providers; health bars; a token's life."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from harness.ports import free_port
from harness.smtp import SmtpServer
from tests.browser import PASSWORD, create_user, log_in, screenshot

PHONE = {"width": 375, "height": 812}


@pytest.fixture
def sinks():
    """One sink that wants the providers' username and password, one that wants none."""
    started = [SmtpServer(credentials=("mailer", PASSWORD)).start(), SmtpServer().start()]
    yield started
    for sink in started:
        sink.stop()


def shots(page, name: str) -> None:
    """Screenshots at desktop width and at 375 px, where nothing may scroll sideways."""
    screenshot(page, name)
    size = page.viewport_size
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
    screenshot(page, f"{name}-375")
    page.set_viewport_size(size)


def card(page, name: str):
    return page.locator("li.provider", has=page.get_by_role("heading", name=name, exact=True))


def api_status(web, token: str) -> int:
    return web.api(token).get("/api/v1/emails").status_code


def fill_smtp(page, *, name: str, port: int, password: str = PASSWORD) -> None:
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    page.locator("#id_host").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(port))
    page.get_by_label("Security").select_option("none")
    page.locator("#id_username").fill("mailer")
    page.locator("#id_password").fill(password)


def test_add_edit_reorder_and_test_providers(web, page, sinks):
    first, second = sinks
    log_in(page, web, create_user(web, "pat"))
    page.goto(f"{web.url}/providers/")
    page.get_by_role("link", name="Add a provider").first.click()
    screenshot(page, "provider-add-choice")
    # The Gmail preset fills the form; there is no network here, so it is not saved.
    page.get_by_role("link", name=re.compile(r"^Gmail \(SMTP\)")).click()
    assert page.locator("#id_host").input_value() == "smtp.gmail.com"
    assert page.get_by_label("Port").input_value() == "587"
    assert page.get_by_label("Security").input_value() == "starttls"
    shots(page, "provider-add-gmail")

    page.goto(f"{web.url}/providers/add/")
    page.get_by_role("link", name=re.compile(r"^SMTP ")).click()
    fill_smtp(page, name="primary", port=first.port)
    page.get_by_role("button", name="Add provider").click()
    expect(
        page.get_by_role("status").filter(has_text="Added the provider primary").first
    ).to_be_visible()

    # A mistake keeps what was typed, except the secret.
    page.goto(f"{web.url}/providers/add/smtp/")
    fill_smtp(page, name="backup", port=second.port)
    page.locator("#id_host").fill("not a host!")
    page.get_by_role("button", name="Add provider").click()
    assert "is not a host name" in page.locator("#id_host_error").inner_text()
    assert page.locator("#id_host").get_attribute("aria-invalid") == "true"
    assert page.get_by_role("textbox", name="Name", exact=True).input_value() == "backup"
    assert page.locator("#id_password").input_value() == ""
    expect(page.get_by_role("alert").first).to_be_visible()
    shots(page, "provider-form-error")
    page.locator("#id_host").fill("127.0.0.1")
    page.locator("#id_username").fill("mailer")
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Add provider").click()

    # Edit: secrets show as set, never their values; blank keeps them.
    card(page, "backup").get_by_role("link", name="Edit backup").click()
    assert page.locator("#id_password").input_value() == ""
    assert PASSWORD not in page.content()
    assert page.locator("label[for=id_password]").inner_text() == "Password set"
    shots(page, "provider-edit")
    page.get_by_role("textbox", name="Name", exact=True).fill("backup relay")
    page.get_by_role("button", name="Save").click()
    # count() does not wait: on a loaded machine the list may not have loaded yet.
    expect(card(page, "backup relay")).to_have_count(1)

    # Reorder with the keyboard: the arrow buttons are plain form buttons.
    down = card(page, "primary").get_by_role("button", name="Down: primary")
    down.focus()
    with page.expect_navigation():
        page.keyboard.press("Enter")
    names = page.locator("li.provider h2").all_inner_texts()
    assert names == ["backup relay", "primary"]
    expect(card(page, "backup relay").get_by_text("default", exact=True)).to_have_count(1)
    card(page, "primary").get_by_role("button", name="Make default: primary").click()
    assert page.locator("li.provider h2").all_inner_texts() == ["primary", "backup relay"]

    # Send a test through each; the second now points at a closed port.
    card(page, "primary").get_by_role("button", name="Send test through primary").click()
    result = card(page, "primary").locator(".test-result")
    assert "Test message sent" in result.inner_text() and "pat@example.com" in result.inner_text()
    assert first.received[-1].rcpt_tos == ["pat@example.com"]
    shots(page, "providers-test-sent")
    card(page, "backup relay").get_by_role("link", name="Edit backup relay").click()
    page.get_by_label("Port").fill(str(free_port()))
    page.get_by_role("button", name="Save").click()
    card(page, "backup relay").get_by_role("button", name="Send test through backup relay").click()
    failed = card(page, "backup relay").locator(".test-result")
    assert "not sent: provider_error" in failed.inner_text()
    assert re.search(r"in \d+ ms", failed.inner_text())
    expect(card(page, "backup relay").get_by_text("Last error")).to_have_count(1)
    shots(page, "providers-test-failed")
    assert PASSWORD not in page.content()
    assert page.console_errors == [], page.console_errors


def test_health_page_draws_bars_for_a_failing_and_a_healthy_provider(web, page, sinks):
    sink = sinks[1]
    username = create_user(web, "hal")
    for name, port in (("flaky", free_port()), ("steady", sink.port)):
        web.factory("provider", username, "smtp", "--name", name, "--smtp-port", str(port))
    token = web.factory("token", username, "--name", "health")["token"]
    for number in range(5):  # flaky fails three times, then its circuit opens: skipped
        body = {"from": "hal@example.com", "to": "x@example.org", "subject": f"n{number}",
                "text": "hi"}  # fmt: skip
        response = web.api(token).post("/api/v1/emails", body)
        assert response.status_code == 201 and response.json()["status"] == "sent", response
    log_in(page, web, username)
    page.goto(f"{web.url}/health/")
    flaky = page.locator(".health-bar", has_text="flaky").locator("svg")
    steady = page.locator(".health-bar", has_text="steady").locator("svg")
    expect(flaky.locator("rect.bar-provider_error")).to_have_count(1)
    expect(flaky.locator("rect.bar-skipped")).to_have_count(1)
    expect(steady.locator("rect.bar-sent")).to_have_count(1)
    expect(steady.locator("rect.bar-provider_error")).to_have_count(0)
    title = flaky.locator("title").first.text_content()
    assert title == "flaky: 3 provider error (60%), 2 skipped (circuit open) (40%)"
    width = float(flaky.locator("rect.bar-provider_error").get_attribute("width"))
    assert width == pytest.approx(60.0)
    row = page.get_by_role("row", name=re.compile("^steady"))
    assert "5 (100%)" in row.inner_text()
    assert len(sink.received) == 5
    shots(page, "health")
    assert page.console_errors == [], page.console_errors


def test_create_copy_use_and_revoke_a_token(web, page):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=web.url)
    log_in(page, web, create_user(web, "tia"))
    page.goto(f"{web.url}/tokens/")
    page.get_by_label("Token name").fill("deploy script")
    page.get_by_role("button", name="Create token").click()
    field = page.get_by_label("Token “deploy script”")
    raw = field.input_value()
    assert raw.startswith("es_") and field.get_attribute("readonly") is not None
    assert "won't be shown again" in page.get_by_role("alert").inner_text()
    page.get_by_role("button", name="Copy").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == raw
    shots(page, "token-created")
    assert api_status(web, raw) == 200

    page.reload()  # shown once
    assert raw not in page.content() and "shown only once" in page.content()
    page.goto(f"{web.url}/tokens/")
    row = page.get_by_role("row", name=re.compile("^deploy script"))
    assert raw[:10] + "…" in row.inner_text() and "active" in row.inner_text()
    assert "never" not in row.inner_text()  # the API call above was its first use
    shots(page, "tokens")
    row.get_by_role("link", name="Revoke deploy script").click()
    shots(page, "token-revoke")
    page.get_by_role("button", name="Revoke deploy script").click()
    row = page.get_by_role("row", name=re.compile("^deploy script"))
    expect("revoked" in row.inner_text() and row.get_by_role("link")).to_have_count(0)
    assert api_status(web, raw) == 401
    assert json.dumps(raw) not in page.content()
    assert page.console_errors == [], page.console_errors
