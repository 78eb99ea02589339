"""The account, send and sent-email pages in real Chromium against gunicorn with production
settings, real SMTP servers as providers and as the site's own mail: what a person does."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect

from harness.ports import free_port
from harness.smtp import ScriptedHandler
from tests.browser import PASSWORD, create_user, log_in, screenshot


def add_smtp(web, username: str, name: str, port: int) -> None:
    """An SMTP provider for the account, created by the service the provider pages call."""
    web.factory("provider", username, "smtp", "--name", name, "--smtp-port", str(port))


def fill_send_form(page, *, to: str, subject: str, text: str) -> None:
    page.get_by_label("From").fill("Dana <dana@example.com>")
    page.get_by_label("To", exact=True).fill(to)
    page.get_by_label("Subject").fill(subject)
    page.get_by_label("Text body").fill(text)


def test_sign_up_send_with_an_attachment_and_find_it_in_the_list(web, page, smtp_server, site_sink):
    sink = smtp_server()
    page.goto(web.url)
    assert page.url == f"{web.url}/accounts/login/"
    assert page.title() == "Log in · emailservice"
    screenshot(page, "main-login")
    page.get_by_role("link", name="Create an account").click()
    page.get_by_label("Username").fill("dana")
    page.get_by_label("Email").fill("dana@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    screenshot(page, "main-signup")
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{web.url}/accounts/signup/sent/")
    assert page.title() == "Check your email · emailservice"
    # The answer is by email (the page never says whether an account exists): open its link.
    [received] = [r for r in site_sink.received if r.rcpt_tos == ["dana@example.com"]]
    link = re.search(r"http://\S+/accounts/signup/confirm/\S+/", received.message.get_content())
    page.goto(link[0])
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_url(f"{web.url}/emails/")
    assert "Welcome!" in page.get_by_role("status").first.inner_text()
    screenshot(page, "main-emails-empty")

    # The provider pages (the other half of the portal) add the SMTP provider.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Providers").click()
    page.get_by_role("link", name="Add a provider").first.click()
    page.get_by_role("link", name=re.compile(r"^SMTP ")).click()
    page.get_by_role("textbox", name="Name", exact=True).fill("office-relay")
    page.locator("#id_host").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(sink.port))
    page.get_by_label("Security").select_option("none")
    page.get_by_role("button", name="Add provider").click()
    expect(
        page.get_by_role("status").filter(has_text="Added the provider office-relay").first
    ).to_be_visible()
    page.get_by_role("link", name="Send", exact=True).click()
    assert page.get_by_label("Send through").input_value() != ""
    fill_send_form(
        page,
        to="erin@example.org, frank@example.org",
        subject="Plans",
        text="See the attached plan.",
    )
    page.get_by_label("Attachments").set_input_files(
        [{"name": "plan.txt", "mimeType": "text/plain", "buffer": b"step 1\nstep 2\n"}]
    )
    screenshot(page, "main-send")
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url(re.compile(r".*/emails/\d+/$"))
    assert page.get_by_role("status").first.inner_text() == "Sent via office-relay."
    expect(page.locator(".attempt")).to_have_count(1)
    assert "plan.txt" in page.locator(".attachments").inner_text()
    screenshot(page, "main-email-detail")
    [received] = sink.received
    assert received.rcpt_tos == ["erin@example.org", "frank@example.org"]
    [attachment] = list(received.message.iter_attachments())
    assert attachment.get_filename() == "plan.txt"

    page.get_by_role("link", name="Sent emails").first.click()
    row = page.locator("tbody tr").first
    assert "Plans" in row.inner_text() and "office-relay" in row.inner_text()
    assert row.locator(".status-badge").inner_text().lower() == "sent"
    screenshot(page, "main-emails-list")
    row.get_by_role("link", name="Plans").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Plans"
    assert page.console_errors == [], page.console_errors


def test_a_failing_first_provider_fails_over_to_the_second(web, page, smtp_server):
    busy = smtp_server(ScriptedHandler(mail_reply="421 4.7.0 Too busy, try later"))
    backup = smtp_server()
    create_user(web, "gail")
    add_smtp(web, "gail", "busy-primary", busy.port)
    add_smtp(web, "gail", "backup", backup.port)
    log_in(page, web, "gail")
    page.goto(f"{web.url}/send/")
    assert (
        "busy-primary" in page.get_by_label("Send through").locator("option:checked").inner_text()
    )
    fill_send_form(page, to="hal@example.org", subject="Failover", text="Hello.")
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url(re.compile(r".*/emails/\d+/$"))
    assert page.get_by_role("status").first.inner_text() == "Sent via backup after 2 attempts."
    attempts = page.locator(".attempt")
    expect(attempts).to_have_count(2)
    first, second = attempts.nth(0).inner_text(), attempts.nth(1).inner_text()
    assert "busy-primary" in first and "Provider error" in first and "421" in first
    assert "backup" in second and "Sent" in second
    screenshot(page, "main-email-detail-failover")
    assert len(backup.received) == 1 and busy.received == []


def test_a_form_error_is_shown_beside_its_field_and_keeps_the_input(web, page, smtp_server):
    create_user(web, "ivan")
    add_smtp(web, "ivan", "relay", smtp_server().port)
    log_in(page, web, "ivan")
    page.goto(f"{web.url}/send/")
    fill_send_form(page, to="judy@example.org\nnot-an-address", subject="Kept", text="Body kept")
    page.get_by_label("Attachments").set_input_files(
        [{"name": "a.txt", "mimeType": "text/plain", "buffer": b"a"}]
    )
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_load_state()
    to = page.locator("#id_to")
    assert to.get_attribute("aria-invalid") == "true"
    assert "not-an-address" in page.locator("#id_to_error").inner_text()
    assert to.input_value() == "judy@example.org\nnot-an-address"
    assert page.get_by_label("Subject").input_value() == "Kept"
    assert page.get_by_label("Text body").input_value() == "Body kept"
    assert "choose your attachments again (a.txt)" in page.locator("#reattach-note").inner_text()
    # The error summary is announced and has the focus.
    assert page.evaluate("document.activeElement.getAttribute('role')") == "alert"
    screenshot(page, "main-send-error")


def test_schedule_an_email_see_it_scheduled_in_the_list_and_cancel_it(web, page, smtp_server):
    sink = smtp_server()
    create_user(web, "yara")
    add_smtp(web, "yara", "relay", sink.port)
    page.add_init_script(script=CSP_LISTENER)
    log_in(page, web, "yara")
    page.goto(f"{web.url}/send/")
    fill_send_form(page, to="zoe@example.org", subject="Next week", text="See you then.")
    when = (datetime.now(UTC) + timedelta(days=2)).replace(second=0, microsecond=0)
    page.get_by_label("Send at (UTC)").fill(when.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url(re.compile(r".*/emails/\d+/$"))
    said = f"Scheduled for {when:%-d %b %Y, %H:%M} UTC"
    expect(page.get_by_role("status").first).to_contain_text(said)
    expect(page.locator("h1 + .status-badge")).to_have_text("scheduled")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Sent emails").click()
    row = page.get_by_role("row").filter(has_text="Next week")
    expect(row.locator(".status-badge")).to_have_text("scheduled")
    expect(row).to_contain_text(f"scheduled for {when:%-d %b %Y, %H:%M} UTC")
    screenshot(page, "main-emails-list-scheduled")
    row.get_by_role("button", name=re.compile(r"^Cancel")).click()
    page.wait_for_url(f"{web.url}/emails/")
    expect(page.get_by_role("status").first).to_contain_text("it will not be sent")
    expect(row.locator(".status-badge")).to_have_text("canceled")
    expect(row.get_by_role("button", name=re.compile(r"^Cancel"))).to_have_count(0)
    assert sink.received == []
    assert page.console_errors == [], page.console_errors
    assert page.evaluate("window.cspViolations") == []


def test_password_reset_mail_arrives_through_the_site_mailer_and_its_link_works(
    web, page, site_sink
):
    create_user(web, "kim")
    page.goto(f"{web.url}/accounts/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    page.get_by_label("Email").fill("kim@example.com")
    screenshot(page, "main-password-reset")
    page.get_by_role("button", name="Send reset link").click()
    page.wait_for_url(f"{web.url}/accounts/password/reset/sent/")
    screenshot(page, "main-password-reset-sent")
    [received] = [r for r in site_sink.received if r.rcpt_tos == ["kim@example.com"]]
    assert received.message["From"] == "emailservice <no-reply@example.com>"
    link = re.search(r"http://\S+/accounts/password/reset/\S+/", received.message.get_content())
    page.goto(link[0])
    new_password = "another pass phrase 88"
    page.get_by_label("New password", exact=True).fill(new_password)
    page.get_by_label("New password confirmation").fill(new_password)
    screenshot(page, "main-password-reset-confirm")
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(f"{web.url}/accounts/password/reset/done/")
    log_in(page, web, "kim", new_password)
    page.goto(f"{web.url}/accounts/password/change/")
    screenshot(page, "main-password-change")


def test_pages_fit_a_phone_and_start_with_a_skip_link(web, browser, smtp_server):
    create_user(web, "lena")
    add_smtp(web, "lena", "relay", smtp_server().port)
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    try:
        log_in(page, web, "lena")
        page.goto(f"{web.url}/send/")
        fill_send_form(
            page, to="max@example.org", subject="A rather long subject line " * 3, text="Hi."
        )
        page.get_by_role("button", name="Send", exact=True).click()
        page.wait_for_url(re.compile(r".*/emails/\d+/$"))
        for path, name in (
            ("/emails/", "main-emails-list-375"),
            ("/send/", "main-send-375"),
            (page.url.removeprefix(web.url), "main-email-detail-375"),
            ("/accounts/password/change/", "main-password-change-375"),
        ):
            page.goto(web.url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, (path, width)
            screenshot(page, name)
        page.goto(f"{web.url}/emails/")
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent")
        assert focused == "Skip to content"
    finally:
        context.close()


def test_the_html_body_is_shown_sandboxed_and_never_runs(web, page, smtp_server):
    create_user(web, "nora")
    add_smtp(web, "nora", "relay", smtp_server().port)
    log_in(page, web, "nora")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{web.url}/send/")
    fill_send_form(page, to="olga@example.org", subject="HTML", text="Plain part")
    page.get_by_label("HTML body").fill(
        '<h2>Hello</h2><script>alert("script ran")</script><img src=x onerror="alert(1)">'
    )
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url(re.compile(r".*/emails/\d+/$"))
    frame = page.frame_locator("iframe.email-html")
    assert frame.get_by_role("heading", name="Hello").inner_text() == "Hello"
    page.wait_for_timeout(300)
    assert dialogs == []
    assert page.locator("iframe.email-html").get_attribute("sandbox") == ""
    screenshot(page, "main-email-detail-html")


def test_the_original_urls_lead_to_the_pages(web, page):
    create_user(web, "pia")
    page.goto(f"{web.url}/send_email/")
    assert page.url == f"{web.url}/accounts/login/?next=/send/"
    log_in(page, web, "pia")
    page.goto(f"{web.url}/send_email/")
    assert page.url == f"{web.url}/send/"
    page.goto(f"{web.url}/view_sent_emails/?TOKEN=whatever")
    assert page.url == f"{web.url}/emails/"


def test_a_closed_port_provider_is_reported_as_failed(web, page):
    create_user(web, "quinn")
    add_smtp(web, "quinn", "nobody-home", free_port())
    log_in(page, web, "quinn")
    page.goto(f"{web.url}/send/")
    fill_send_form(page, to="rita@example.org", subject="Nowhere", text="Hello.")
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url(re.compile(r".*/emails/\d+/$"))
    alert = page.locator(".alert-danger").first.inner_text()
    assert alert.startswith("Not sent:") and "1 attempt" in alert
    assert page.locator(".status-badge").inner_text().lower() == "failed"
    screenshot(page, "main-email-detail-failed")


def test_repeated_wrong_passwords_lock_the_account_for_a_while(web, page):
    create_user(web, "sam")
    page.goto(f"{web.url}/accounts/login/")
    for password in ["wrong 1", "wrong 2", "wrong 3", "wrong 4", "wrong 5", PASSWORD]:
        page.get_by_label("Username").fill("sam")
        page.get_by_label("Password").fill(password)
        with page.expect_response(f"{web.url}/accounts/login/") as answer:
            page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 429  # the right password, after five wrong ones
    assert "Too many failed log-ins" in page.get_by_role("alert").inner_text()
    screenshot(page, "main-login-throttled")


# Records every Content-Security-Policy violation the page reports (Playwright adds it to each
# document before the page's own scripts, outside the page's CSP).
CSP_LISTENER = """window.cspViolations = [];
document.addEventListener("securitypolicyviolation",
  (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));"""


def postmark_record(record_type: str, email_id: int, recipient: str, minutes: int) -> dict:
    """A Postmark webhook record about our email (its id in Metadata, as we send it)."""
    at = (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()
    fields = {
        "Delivery": {"Recipient": recipient, "DeliveredAt": at, "Details": "smtp;250 2.0.0 OK"},
        "Click": {"Recipient": recipient, "ReceivedAt": at,
                  "OriginalLink": "https://example.com/plans?<b>"},
        "Bounce": {"Email": recipient, "BouncedAt": at, "Type": "HardBounce", "TypeCode": 1,
                   "ID": 42, "Description": "Unknown user", "Details": "550 5.1.1 No such user"},
    }[record_type]  # fmt: skip
    ours = {"MessageID": f"pm-{email_id}", "Metadata": {"email_id": str(email_id)}}
    return {"RecordType": record_type, "ServerID": 1, "MessageStream": "outbound", **ours, **fields}


def test_an_email_with_provider_events_renders_with_no_console_error_or_csp_violation(
    web, page, smtp_server
):
    create_user(web, "uma")
    add_smtp(web, "uma", "relay", smtp_server().port)
    secrets = {"server_token": "pm", "webhook_username": "hooks", "webhook_password": PASSWORD}
    mark = web.factory("provider", "uma", "postmark", "--name", "mark",
                       "--settings", json.dumps({"api_url": "http://127.0.0.1:9"}),
                       "--secrets", json.dumps(secrets))  # fmt: skip
    [config] = web.factory(
        "rows", "mailer.ProviderConfig", f"pk={mark['id']}", "--fields", "webhook_token"
    )
    page.add_init_script(script=CSP_LISTENER)
    log_in(page, web, "uma")
    page.goto(f"{web.url}/send/")
    fill_send_form(page, to="vic@example.org, wes@example.org", subject="Events", text="Hi.")
    page.get_by_role("button", name="Send", exact=True).click()
    page.wait_for_url(re.compile(r".*/emails/\d+/$"))
    email_id = int(re.search(r"/emails/(\d+)/$", page.url)[1])
    auth = "Basic " + base64.b64encode(f"hooks:{PASSWORD}".encode()).decode()
    hooks = web.api()
    for record in (postmark_record("Delivery", email_id, "vic@example.org", 3),
                   postmark_record("Click", email_id, "vic@example.org", 1),
                   postmark_record("Bounce", email_id, "wes@example.org", 2)):  # fmt: skip
        answer = hooks.post(f"/webhooks/in/{config['webhook_token']}/", record,
                            headers={"Authorization": auth})  # fmt: skip
        assert answer.status_code == 200, answer
    page.reload()
    badge = page.locator("h1 + .status-badge + .delivery-badge")
    assert badge.text_content() == "Delivery: partially delivered"
    events = page.get_by_role("region", name="Delivery events")
    groups = events.locator(".event-recipient")
    expect(groups).to_have_count(2)
    assert "latest: clicked" in groups.nth(0).inner_text()  # a click ranks as a delivery
    assert "latest: bounced" in groups.nth(1).inner_text()
    assert "https://example.com/plans?<b>" in groups.nth(0).inner_text()
    assert "550 5.1.1 No such user" in groups.nth(1).inner_text()
    screenshot(page, "main-email-detail-events")
    # The same events as rates on the health page, its SVG chart under the same CSP.
    page.goto(f"{web.url}/health/?range=7d")
    chart = page.locator(f"#rates-{mark['id']} svg")
    assert "50% delivered (1), 50% bounced (1)" in chart.locator("title").first.text_content()
    screenshot(page, "main-health-rates")
    assert page.console_errors == [], page.console_errors
    assert page.evaluate("window.cspViolations") == []
    # The listener does hear a violation: an inline style the CSP refuses.
    page.evaluate("document.body.setAttribute('style', 'color: red')")
    page.wait_for_function("window.cspViolations.length > 0")
