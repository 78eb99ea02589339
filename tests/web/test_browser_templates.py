"""The templates page in Debian's Chromium against the app under gunicorn: a person writes a
template and its sample variables, and the live preview follows as they type (the HTML in a
sandboxed frame that runs nothing), with no console error or CSP violation."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser import create_user, log_in, screenshot
from tests.web.test_browser_main import CSP_LISTENER


def test_the_live_preview_follows_the_form_as_it_is_typed(web, page):
    create_user(web, "tess")
    page.add_init_script(script=CSP_LISTENER)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    log_in(page, web, "tess")
    page.get_by_role("link", name="Templates", exact=True).click()
    page.get_by_role("link", name="New template").click()
    preview = page.get_by_role("region", name="Preview")
    subject = preview.locator("[data-preview-subject]")
    problems = preview.locator("[data-preview-errors]")

    page.get_by_label("Name").fill("welcome")
    page.get_by_label("Subject").press_sequentially("Hello {{ first_name }}!")
    expect(problems).to_contain_text("variables.first_name")  # the sample is still {}
    variables = page.get_by_label("Sample variables (JSON)")
    variables.fill("")
    variables.press_sequentially('{"first_name": "Ann", "note": "<script>alert(1)</script>"}')
    expect(subject).to_have_text("Hello Ann!")
    expect(problems).to_be_hidden()

    page.get_by_label("Text part").fill("Hi {{ first_name }},\n{{ note }}")
    expect(preview.locator("[data-preview-text]")).to_have_text(
        "Hi Ann,\n<script>alert(1)</script>"
    )
    page.get_by_label("HTML part").fill("<h2>Hi {{ first_name }}</h2><p>{{ note }}</p>")
    frame = page.frame_locator("iframe[data-preview-html]")
    expect(frame.get_by_role("heading", name="Hi Ann")).to_be_visible()
    expect(frame.locator("p")).to_have_text("<script>alert(1)</script>")  # escaped, as text

    page.get_by_label("HTML part").fill("<p>{{ ''.__class__.__mro__ }}</p>")
    expect(problems).to_contain_text("names starting with '_' are private")
    page.get_by_label("HTML part").fill("<h2>Hi {{ first_name }}</h2><p>{{ note }}</p>")
    expect(problems).to_be_hidden()
    screenshot(page, "templates-live-preview")

    page.get_by_role("button", name="Save template").click()
    page.wait_for_url(f"{web.url}/templates/welcome/edit/")
    expect(page.get_by_role("status").first).to_contain_text("Template welcome saved.")
    expect(subject).to_have_text("Hello first_name!")  # the saved page's own sample
    page.get_by_role("link", name="‹ Templates").click()
    expect(page.get_by_role("row", name="welcome")).to_contain_text("Hello {{ first_name }}!")
    assert dialogs == []
    assert page.console_errors == [], page.console_errors
    assert page.evaluate("window.cspViolations") == []
