"""The API docs page in real Chromium: Swagger UI loads from our static files under the CSP."""

from __future__ import annotations

from tests.browser import screenshot


def test_swagger_ui_renders_under_the_strict_csp(web, page):
    response = page.goto(f"{web.url}/api/v1/docs")
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "object-src 'none'" in csp
    page.get_by_text("POST").first.wait_for(timeout=15000)
    assert page.locator(".opblock-summary-path", has_text="/api/v1/emails").count() >= 2
    screenshot(page, "api-docs")
    assert page.console_errors == [], page.console_errors
