"""The send form, the sent-emails page and an email's detail through the Django test client,
with real SMTP stand-ins and Redis: outcomes, failover, errors that keep input, isolation."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django.utils.html import escape

from harness.factories import loopback_smtp
from harness.smtp import ScriptedHandler
from mailer import listcache
from mailer.models import DeliveryEvent, Email, EmailStatus
from mailer.services import email_process

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(client, account):
    account.email = "alice@example.com"
    account.save()
    client.force_login(account)
    return account


def smtp(add_provider, port: int, name: str, **extra):
    settings = loopback_smtp(port)
    return add_provider("smtp", name=name, settings=settings, **extra)


def form(**overrides) -> dict:
    data = {
        "from_email": "Alice <alice@example.com>",
        "to": "bob@example.org",
        "cc": "",
        "bcc": "",
        "reply_to": "",
        "subject": "Quarterly report",
        "text": "Numbers attached.",
        "html": "",
        "submission": "s-1",
    }
    data.update(overrides)
    return data


def send(client, provider=None, **overrides):
    data = form(**overrides)
    if provider is not None:
        data["provider"] = str(provider.pk)
    return client.post("/send/", data)


def flash(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# The send form -------------------------------------------------------------------------------


def test_send_page_lists_enabled_providers_default_first(client, member, add_provider):
    second = smtp(add_provider, 2525, "backup", priority=20)
    first = smtp(add_provider, 2526, "primary", priority=10)
    smtp(add_provider, 2527, "off", enabled=False)
    page = client.get("/send/")
    assert page.status_code == 200
    html = page.content.decode()
    options = re.findall(r'<option value="(\d+)"( selected)?>([^<]+)</option>', html)
    assert [(int(pk), bool(sel)) for pk, sel, _ in options] == [
        (first.pk, True),
        (second.pk, False),
    ]
    assert "default" in options[0][2]
    assert 'value="alice@example.com"' in html  # the account's address as From
    assert 'enctype="multipart/form-data"' in html and "multiple" in html


def test_sending_with_an_attachment_goes_to_its_detail_with_the_outcome(
    client, member, add_provider, smtp_sink
):
    smtp(add_provider, smtp_sink.port, "sink")
    report = SimpleUploadedFile("report.csv", b"q,total\n1,42\n", content_type="text/csv")
    response = client.post(
        "/send/",
        {
            **form(to='bob@example.org,\n"Doe, Jane" <jane@example.org>', provider=""),
            "provider": str(member.provider_configs.get().pk),
            "attachments": [report],
        },
    )
    email = Email.objects.get(account=member)
    assert response.status_code == 302 and response.url == f"/emails/{email.pk}/"
    detail = client.get(response.url)
    assert flash(detail) == ["Sent via sink."]
    assert email.status == EmailStatus.SENT and email.to == [
        "bob@example.org",
        '"Doe, Jane" <jane@example.org>',
    ]
    [received] = smtp_sink.received
    [attachment] = list(received.message.iter_attachments())
    assert attachment.get_filename() == "report.csv"
    assert attachment.get_content() == "q,total\n1,42\n"
    html = detail.content.decode()
    assert "report.csv" in html and "text/csv" in html and "Quarterly report" in html


def test_the_chosen_provider_is_tried_first(client, member, add_provider, smtp_server):
    first, second = smtp_server(), smtp_server()
    smtp(add_provider, first.port, "one")
    chosen = smtp(add_provider, second.port, "two")
    response = send(client, chosen)
    assert flash(client.get(response.url)) == ["Sent via two."]
    assert len(second.received) == 1 and first.received == []


def test_a_failing_provider_fails_over_and_both_attempts_show(
    client, member, add_provider, smtp_server
):
    busy = smtp_server(ScriptedHandler(mail_reply="421 4.7.0 Try again later"))
    good = smtp_server()
    primary = smtp(add_provider, busy.port, "primary")
    smtp(add_provider, good.port, "backup")
    detail = client.get(send(client, primary).url)
    assert flash(detail) == ["Sent via backup after 2 attempts."]
    html = detail.content.decode()
    timeline = html[html.index("Delivery attempts") :]
    assert timeline.index("primary") < timeline.index("backup")
    assert "Provider error" in timeline and "421" in timeline and " ms" in timeline
    assert "outcome-sent" in timeline


def test_when_every_provider_fails_the_reason_and_attempts_show(
    client, member, add_provider, closed_port
):
    only = smtp(add_provider, closed_port, "down")
    detail = client.get(send(client, only).url)
    [message] = flash(detail)
    assert message.startswith("Not sent: ") and "(1 attempt)" in message
    email = Email.objects.get(account=member)
    assert email.status == EmailStatus.FAILED
    assert escape(email.failure_reason) in detail.content.decode()
    assert "status-failed" in detail.content.decode()


def test_in_queue_mode_the_form_says_queued_and_the_detail_follows(
    client, member, add_provider, smtp_sink, settings
):
    settings.DELIVERY_MODE = "queue"
    provider = smtp(add_provider, smtp_sink.port, "sink")
    response = send(client, provider)
    detail = client.get(response.url)
    assert flash(detail) == ["Queued: a worker sends it shortly; this page shows the outcome."]
    assert 'data-refresh-seconds="5"' in detail.content.decode()
    assert smtp_sink.received == []
    email = Email.objects.get(account=member)
    assert email_process(email_id=email.pk) == "sent"  # what the worker's task runs
    html = client.get(response.url).content.decode()
    assert "Sent via <strong>sink</strong>" in html and "data-refresh-seconds" not in html


def test_service_errors_are_beside_their_fields_and_keep_the_input(
    client, member, add_provider, smtp_sink
):
    provider = smtp(add_provider, smtp_sink.port, "sink")
    upload = SimpleUploadedFile("notes.txt", b"notes", content_type="text/plain")
    response = client.post(
        "/send/",
        {
            **form(
                to="bob@example.org, not-an-address", cc="x@y@z", subject="Kept subject", text=""
            ),
            "provider": str(provider.pk),
            "attachments": [upload],
        },
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "not-an-address" in errors["to"][0] and "cc" in errors and "text" in errors
    html = response.content.decode()
    assert 'id="id_to_error"' in html and 'aria-invalid="true"' in html
    assert re.search(r'<textarea[^>]+id="id_to"[^>]*>\s*bob@example.org, not-an-address', html)
    assert 'value="Kept subject"' in html
    assert "choose your attachments again" in html and "notes.txt" in html
    assert 'name="submission" value="s-1"' in html  # the same form: a resend is still one email
    assert not Email.objects.exists() and smtp_sink.received == []


def test_attachments_over_the_size_limit_are_a_field_error(
    client, member, add_provider, smtp_sink, settings
):
    # Small enough to pass the request size limit, too large once base64-encoded.
    settings.MAX_MESSAGE_BYTES = 20_000
    provider = smtp(add_provider, smtp_sink.port, "sink")
    big = SimpleUploadedFile("big.bin", b"x" * 16_000, content_type="application/octet-stream")
    response = client.post("/send/", {**form(), "provider": provider.pk, "attachments": [big]})
    assert response.status_code == 200
    assert "Choose smaller files" in response.context["form"].errors["attachments"][0]
    assert not Email.objects.exists()


def test_the_same_form_sent_twice_sends_once(client, member, add_provider, smtp_sink):
    provider = smtp(add_provider, smtp_sink.port, "sink")
    first = send(client, provider)
    assert flash(client.get(first.url)) == ["Sent via sink."]
    again = send(client, provider)
    assert again.url == first.url
    assert flash(client.get(again.url)) == ["This form was already sent; here is its email."]
    assert len(smtp_sink.received) == 1
    # A new form (a new submission id) is a new email, even with the same content.
    send(client, provider, submission="s-2")
    assert len(smtp_sink.received) == 2


def test_without_a_provider_the_page_says_so(client, member):
    page = client.get("/send/")
    assert "no enabled provider" in page.content.decode()
    response = send(client)
    assert response.status_code == 200 and "provider" in response.context["form"].errors


def test_pages_need_a_log_in(client, account):
    email = Email.objects.create(account=account, from_email="a@b.c", to=["d@e.f"])
    for url in ("/send/", "/emails/", f"/emails/{email.pk}/"):
        assert client.get(url).url == f"/accounts/login/?next={url}"


# The sent-emails page ------------------------------------------------------------------------


def stored(account, count: int, **values) -> list[Email]:
    """Rows as a finished send leaves them (set-up only); the account's lists are invalidated."""
    fields = {"from_email": "a@example.com", "to": ["b@example.org"], "status": "sent"}
    rows = [
        Email.objects.create(account=account, **{"subject": f"Email {i}", **fields, **values})
        for i in range(count)
    ]
    listcache.bump(account.pk)
    return rows


def subjects(response) -> list[str]:
    return [email["subject"] for email in response.context["emails"]]


def test_newest_first_ten_a_page_with_page_controls(client, member):
    stored(member, 23)
    first = client.get("/emails/")
    assert subjects(first) == [f"Email {i}" for i in range(22, 12, -1)]
    html = first.content.decode()
    assert "Page 1 of 3" in html and 'rel="next"' in html and 'href="?page=3"' in html
    assert "« First</span>" in html  # disabled on the first page
    last = client.get("/emails/", {"page": "3"})
    assert subjects(last) == ["Email 2", "Email 1", "Email 0"]
    assert "Page 3 of 3" in last.content.decode() and 'href="?page=2"' in last.content.decode()
    assert subjects(client.get("/emails/", {"page": "99"})) == subjects(last)
    assert subjects(client.get("/emails/", {"page": "-1"})) == subjects(first)


def test_columns_and_distinct_status_badges(client, member, add_provider):
    via = smtp(add_provider, 2525, "primary")
    stored(member, 1, status="sent", sent_via=via, sent_via_kind="smtp", subject="S")
    stored(member, 1, status="failed", subject="F")
    stored(member, 1, status="queued", subject="Q")
    stored(member, 1, status="sending", subject="G", to=["x@example.org", "y@example.org"])
    html = client.get("/emails/").content.decode()
    for status in ("sent", "failed", "queued", "sending"):
        assert f'<span class="badge status-badge status-{status}">{status}</span>' in html
    assert "primary" in html and "+1" in html and "a@example.com" in html
    for column in ("Subject", "From", "To", "Status", "Sent via", "When"):
        assert f'<th scope="col">{column}</th>' in html


def test_filter_by_status_and_provider_and_pages_keep_the_filter(client, member, add_provider):
    one, two = smtp(add_provider, 2525, "one"), smtp(add_provider, 2526, "two")
    stored(member, 12, sent_via=one, sent_via_kind="smtp")
    stored(member, 2, sent_via=two, sent_via_kind="smtp", subject="via two")
    stored(member, 3, status="failed", subject="failed one")
    response = client.get("/emails/", {"status": "failed"})
    assert subjects(response) == ["failed one"] * 3
    assert subjects(client.get("/emails/", {"provider": two.pk})) == ["via two"] * 2
    filtered = client.get("/emails/", {"provider": one.pk, "status": "sent"})
    assert len(subjects(filtered)) == 10
    assert f"provider={one.pk}&amp;status=sent&amp;page=2" in filtered.content.decode()
    # Nonsense filters are ignored, not a server error.
    assert client.get("/emails/", {"status": "nope", "provider": "x"}).status_code == 200


def test_filter_by_delivery_and_its_badge_column(client, member):
    stored(member, 11, delivery="delivered", subject="reached")
    stored(member, 1, delivery="bounced", subject="bounced one")
    stored(member, 1, delivery="partially_delivered", subject="partly")
    stored(member, 1, status="failed", subject="never sent")
    html = client.get("/emails/").content.decode()
    assert '<th scope="col">Delivery</th>' in html and 'name="delivery"' in html
    assert '<option value="complained">Complained</option>' in html
    assert 'delivery-partially_delivered text-bg-warning">partially delivered</span>' in html
    assert 'delivery-bounced text-bg-danger">bounced</span>' in html
    assert "no delivery report" in html  # the failed one: a dash, not "unknown"
    # Each filter its own cached page (the list-cache key has the delivery, as it has status).
    assert subjects(client.get("/emails/", {"delivery": "bounced"})) == ["bounced one"]
    reached = client.get("/emails/", {"delivery": "delivered"})
    assert subjects(reached) == ["reached"] * 10 and reached.context["count"] == 11
    assert "delivery=delivered&amp;page=2" in reached.content.decode()
    failed = client.get("/emails/", {"delivery": "unknown", "status": "failed"})
    assert subjects(failed) == ["never sent"]
    assert "No email matches" in client.get("/emails/", {"delivery": "complained"}).content.decode()
    assert len(subjects(client.get("/emails/", {"delivery": "lost"}))) == 10  # ignored


def test_the_list_is_read_through_the_cached_selector(client, member):
    stored(member, 1, subject="first")
    assert subjects(client.get("/emails/")) == ["first"]
    Email.objects.create(account=member, from_email="a@b.c", to=["d@e.f"], subject="behind")
    assert subjects(client.get("/emails/")) == ["first"]  # served from the cache
    listcache.bump(member.pk)  # what every service write does
    assert subjects(client.get("/emails/")) == ["behind", "first"]


def test_empty_list_invites_to_send(client, member):
    html = client.get("/emails/").content.decode()
    assert "No emails yet" in html and 'href="/send/"' in html


# One email's detail --------------------------------------------------------------------------


def test_detail_shows_the_whole_message_and_never_runs_its_html(client, member):
    [email] = stored(
        member,
        1,
        cc=["c@example.org"],
        reply_to=["r@example.org"],
        text="Plain words",
        html='<p>Hi</p><script>alert("x")</script><img src=x onerror="alert(1)">',
        headers={"X-Campaign": "spring"},
        status="failed",
        failure_reason="smtp 'a': refused",
        attachments=[
            {"filename": "a.pdf", "content_type": "application/pdf", "content": "JVBERi0xLjQK"}
        ],
    )
    html = client.get(f"/emails/{email.pk}/").content.decode()
    for text in (
        "c@example.org",
        "r@example.org",
        "X-Campaign",
        "spring",
        "Plain words",
        "a.pdf",
        "application/pdf",
        "9\xa0bytes",
        "smtp &#x27;a&#x27;: refused",
    ):
        assert text in html, text
    assert '<iframe class="email-html border rounded w-100"' in html and 'sandbox=""' in html
    assert "<script>alert" not in html and "&lt;script&gt;alert(&quot;x&quot;)" in html
    assert "No attempt yet" in html


def event(email, provider, event_type: str, recipient: str, minutes: int, **fields) -> None:
    DeliveryEvent.objects.create(
        account=email.account, provider=provider, provider_kind=provider.kind, email=email,
        type=event_type, recipient=recipient, provider_event_id=uuid.uuid4().hex,
        occurred_at=timezone.now() - timedelta(hours=1) + timedelta(minutes=minutes), **fields,
    )  # fmt: skip


def test_detail_shows_the_provider_events_per_recipient_in_time_order(client, member, add_provider):
    mark = add_provider("postmark", name="mark", secrets={"server_token": "t"})
    states = {"bob@example.org": {"state": "delivered"}, "carol@example.org": {"state": "bounced"}}
    [email] = stored(
        member, 1, to=["Bob <Bob@Example.org>", "carol@example.org"], cc=["dan@example.org"],
        suppressed=["eve@example.org"], delivery="partially_delivered", recipient_states=states,
        possible_duplicate=True, copies_sent=2,
    )  # fmt: skip
    event(email, mark, "delivered", "bob@example.org", 2, detail={"smtp_response": "250 OK"})
    event(email, mark, "deferred", "bob@example.org", 0, detail={"diagnostic": "451 greylisted"})
    event(email, mark, "bounced", "carol@example.org", 1, bounce_type="hard",
          detail={"code": "5.1.1", "diagnostic": "User unknown"})  # fmt: skip
    event(email, mark, "clicked", "bob@example.org", 3, detail={"url": "https://x.test/?a=<b>"})
    html = client.get(f"/emails/{email.pk}/").content.decode()
    header = html.split("</h1>")[1].split("</div>")[0]
    assert "delivery-partially_delivered" in header and "Delivery: </span>partially" in header
    assert "Taken by 2 providers, as their reports show: recipients may get 2 copies." in html
    timeline = html.split('id="events-heading"')[1]
    assert html.index("Delivery attempts") < html.index('id="events-heading"')
    groups = re.findall(r'data-recipient="([^"]+)"', timeline)
    assert groups == ["bob@example.org", "carol@example.org", "dan@example.org"]
    bob, carol, dan = timeline.split('data-recipient="')[1:4]
    assert "latest: delivered" in bob and "latest: bounced" in carol
    types = re.findall(r"event-badge event-(\w+)", bob)[1:]  # after the latest state's
    assert types == ["deferred", "delivered", "clicked"]
    assert "451 greylisted" in bob and "250 OK" in bob and "mark" in bob and "postmark" in bob
    assert "Link: <code>https://x.test/?a=&lt;b&gt;</code>" in bob and 'href="https://x' not in bob
    assert "hard bounce" in carol and "<code>5.1.1</code> User unknown" in carol
    assert "No report on this recipient yet." in dan
    assert "eve@example.org</span> — left out: on the suppression list" in timeline
    audit = PageAudit()
    audit.feed(html)
    assert audit.problems == []
    assert all(b - a <= 1 for a, b in zip(audit.headings, audit.headings[1:], strict=False))


def test_a_sent_email_without_events_says_none_came_yet(client, member):
    [email] = stored(member, 1)
    html = client.get(f"/emails/{email.pk}/").content.decode()
    assert "No provider has reported on it yet" in html and "Taken by" not in html
    assert "delivery-badge delivery-unknown" in html


def test_a_queued_email_says_so_and_refreshes(client, member):
    [email] = stored(member, 1, status="queued")
    html = client.get(f"/emails/{email.pk}/").content.decode()
    assert "Queued." in html and 'data-refresh-seconds="5"' in html


def test_another_accounts_email_is_404(client, member, other_account):
    [theirs] = stored(other_account, 1, subject="Bob's secret")
    response = client.get(f"/emails/{theirs.pk}/")
    assert response.status_code == 404 and b"Bob's secret" not in response.content
    assert "Bob" not in str(subjects(client.get("/emails/")))
    assert client.get(f"/emails/{2**64}/").status_code == 404


# Every page: labelled fields, no inline script or style (the CSP forbids them) ----------------


class PageAudit(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.labels: set[str] = set()
        self.fields: list[str] = []
        self.problems: list[str] = []
        self.headings: list[int] = []
        self.title = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "style" in attrs or tag == "style" or any(a.startswith("on") for a in attrs):
            self.problems.append(f"inline style or handler on <{tag}>")
        if tag == "script" and not attrs.get("src"):
            self.problems.append("inline <script>")
        if tag == "label" and attrs.get("for"):
            self.labels.add(attrs["for"])
        if tag in ("input", "select", "textarea") and attrs.get("type") not in ("hidden", "submit"):
            self.fields.append(attrs.get("id") or f"<{tag} name={attrs.get('name')}>")
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        self.title = self.title or tag == "title"


@pytest.mark.parametrize(
    "url",
    [
        "/send/",
        "/emails/",
        "/emails/{id}/",
        "/accounts/password/change/",
        "/accounts/login/",
        "/accounts/signup/",
        "/accounts/password/reset/",
    ],
)
def test_pages_label_every_field_and_keep_to_the_csp(client, member, add_provider, url):
    smtp(add_provider, 2525, "sink")
    [email] = stored(member, 1, html="<b>hi</b>")
    if "login" in url or "signup" in url or "reset" in url:
        client.logout()
    response = client.get(url.format(id=email.pk))
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    audit = PageAudit()
    audit.feed(response.content.decode())
    assert audit.problems == []
    assert [f for f in audit.fields if f not in audit.labels] == []
    assert audit.title and audit.headings[0] == 1
    assert all(b - a <= 1 for a, b in zip(audit.headings, audit.headings[1:], strict=False))
