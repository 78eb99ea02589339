"""The API docs page in real Chromium: Swagger UI loads from our static files under the CSP."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.browser import screenshot


def test_swagger_ui_renders_under_the_strict_csp(web, page):
    response = page.goto(f"{web.url}/api/v1/docs")
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "object-src 'none'" in csp
    page.get_by_text("POST").first.wait_for(timeout=15000)
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/emails").nth(1)).to_be_visible()
    screenshot(page, "api-docs")
    assert page.console_errors == [], page.console_errors
