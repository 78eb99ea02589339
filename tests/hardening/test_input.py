"""Input limits and hostile input (issue 9, items 1 and 7), at every door: the JSON API, the
original POST /send_email/ (form-encoded, multipart, JSON) and the web send form. Each attack is
a 4xx naming its field, stores nothing and sends nothing; validation refuses oversized input in
linear time; and one live run under gunicorn with production settings shows the same over HTTP."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from harness.factories import loopback_smtp
from harness.smtp import SmtpServer
from mailer.models import Email
from mailer.services import token_create
from mailer.validation import Attachment, InvalidEmail, validate
from tests.appserver import create_account, start_app_server
from tests.conftest import outgoing

pytestmark = pytest.mark.django_db

EMAIL = {"from": "Shop <shop@example.com>", "to": "ann@example.org", "subject": "Your order",
         "text": "Thanks for your order."}  # fmt: skip
BIG_HEADER = "a " * 450_000  # 900 KB: the stdlib's header folding is quadratic in this
LONG_NAME = "N" * 200_000 + " <ann@example.org>"
MANY_REPLY_TO = [f"r{i}@example.org" for i in range(8000)]
CONTROLS = ["\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.fixture
def sink_provider(add_provider, smtp_sink):
    settings = loopback_smtp(smtp_sink.port)
    return add_provider("smtp", name="sink", settings=settings)


@pytest.fixture
def token(account) -> str:
    return token_create(account=account, name="legacy")[1]


@pytest.fixture
def member(client, account):
    client.force_login(account)
    return account


def refused_api(response, field: str, status: int = 422, *, names: str = "") -> dict:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    fields = [error["field"] for error in problem.get("errors", [])]
    assert field in fields, problem
    if names:
        assert names in json.dumps(problem, ensure_ascii=False), problem
    assert len(response.content) < 5000, "an error must not echo unbounded input"
    return problem


# The JSON API ---------------------------------------------------------------------------------

API_ATTACKS = {
    # Item 1: composition is bounded.
    "900 KB header value": ({"headers": {"X-Big": BIG_HEADER}}, "headers", "X-Big"),
    "header value of 999": ({"headers": {"X-Long": "v" * 999}}, "headers", "at most 998"),
    "21 custom headers": ({"headers": {f"X-H{i}": "v" for i in range(21)}}, "headers", "21"),
    "200K display name": ({"to": LONG_NAME}, "to", "too long"),
    "201-character display name": ({"to": f"{'N' * 201} <ann@example.org>"}, "to", "201"),
    "255-character address": ({"to": "a" * 60 + "@" + "d" * 190 + ".org"}, "to", "at most 254"),
    "65-character local part": ({"to": "a" * 65 + "@example.org"}, "to", "at most 64"),
    "999-character subject": ({"subject": "s" * 999}, "subject", "at most 998"),
    "11 reply-to": ({"reply_to": MANY_REPLY_TO[:11]}, "reply_to", "at most 10"),
    "8,000 reply-to": ({"reply_to": MANY_REPLY_TO}, "reply_to", "8000"),
    "metadata over 8 KB": ({"metadata": {"k": "v" * 9000}}, "metadata", "bytes"),
    "metadata 6 deep": ({"metadata": {"a": {"b": {"c": {"d": {"e": {}}}}}}}, "metadata", "level"),
    "metadata with 51 keys": ({"metadata": {f"k{i}": i for i in range(51)}}, "metadata", "keys"),
    "21 attachments": (
        {"attachments": [{"filename": f"{i}.txt", "content": "eA=="} for i in range(21)]},
        "attachments",
        "at most 20",
    ),
    "256-character filename": (
        {"attachments": [{"filename": "f" * 252 + ".txt", "content": "eA=="}]},
        "attachments",
        "at most 255",
    ),
    # Item 7: input that crashed or slipped through.
    "lone surrogate in text": ({"text": "hi \ud800"}, "text", "surrogate"),
    "lone surrogate in html": ({"html": "<p>\udfff</p>"}, "html", "surrogate"),
    "lone surrogate in subject": ({"subject": "hi \ud800"}, "subject", "surrogate"),
    "lone surrogate in a header": ({"headers": {"X-A": "\ud800"}}, "headers", "surrogate"),
    "lone surrogate in metadata": ({"metadata": {"k": "\ud800"}}, "metadata", "surrogate"),
    "lone surrogate in a metadata key": ({"metadata": {"\ud800": 1}}, "metadata", "surrogate"),
    "lone surrogate in to": ({"to": "ann\ud800@example.org"}, "to", "surrogate"),
    "NUL in subject": ({"subject": "hi\x00Bcc: victim@example.org"}, "subject", "NUL"),
    "NUL in text": ({"text": "body\x00"}, "text", "NUL"),
    "NUL in html": ({"html": "<p>\x00</p>"}, "html", "NUL"),
    "NUL in from": ({"from": "shop\x00@example.com"}, "from", "NUL"),
    "NUL in cc": ({"cc": "cc\x00@example.org"}, "cc", "NUL"),
    "NUL in a header": ({"headers": {"X-A": "a\x00b"}}, "headers", "NUL"),
    "NUL in metadata": ({"metadata": {"k": ["ok", "\x00"]}}, "metadata", "NUL"),
    "NUL in a filename": (
        {"attachments": [{"filename": "a\x00.txt", "content": "eA=="}]},
        "attachments",
        "NUL",
    ),
    "NUL in provider": ({"provider": "sink\x00"}, "provider", "NUL"),
    **{
        f"U+{ord(char):04X} in subject": ({"subject": f"hi{char}there"}, "subject", "U+")
        for char in CONTROLS
    },
    **{
        f"U+{ord(char):04X} in a header": ({"headers": {"X-A": f"a{char}b"}}, "headers", "U+")
        for char in CONTROLS
    },
    **{
        f"U+{ord(char):04X} in a filename": (
            {"attachments": [{"filename": f"a{char}b.txt", "content": "eA=="}]},
            "attachments",
            "U+",
        )
        for char in CONTROLS
    },
    **{
        f"U+{ord(char):04X} in to": ({"to": f"Ann{char} <ann@example.org>"}, "to", "U+")
        for char in CONTROLS
    },
    "TAB in an address": ({"reply_to": "Ann\t<ann@example.org>"}, "reply_to", "U+0009"),
}
FORBIDDEN_HEADERS = [
    "X-SMTPAPI", "X-SES-CONFIGURATION-SET", "X-SES-SOURCE-ARN", "X-SG-EID", "X-Mailgun-Variables",
    "X-MC-BccAddress", "X-PM-Message-Stream", "X-MSYS-API", "X-MJ-TemplateID", "X-Mailin-Tag",
    "X-MS-Exchange-Organization-SCL", "X-MSMail-Priority", "X-Spam-Status", "X-Original-To",
    "X-Forwarded-For", "X-Google-DKIM-Signature", "Resent-To", "Resent-From", "Received",
    "DKIM-Signature", "Delivered-To", "Errors-To", "Return-Path", "Sender", "Content-Type",
    "Content-Disposition", "Content-Transfer-Encoding", "MIME-Version", "Message-ID", "Date",
    "Disposition-Notification-To", "Authentication-Results", "ARC-Seal", "Bcc", "Reply-To",
]  # fmt: skip
ALLOWED_HEADERS = {
    "X-Campaign": "spring", "X-Priority": "1", "List-Unsubscribe": "<https://example.com/u/1>",
    "List-Unsubscribe-Post": "List-Unsubscribe=One-Click", "List-Id": "News <news.example.com>",
    "In-Reply-To": "<1@example.com>", "References": "<1@example.com>", "Keywords": "order",
    "Comments": "thanks", "Auto-Submitted": "auto-generated", "Precedence": "bulk",
    "Importance": "high", "Priority": "urgent", "X-Tab": "a\tb",
}  # fmt: skip


@pytest.mark.parametrize(("change", "field", "names"), API_ATTACKS.values(), ids=list(API_ATTACKS))
def test_api_refuses_with_422_naming_the_field(api, sink_provider, smtp_sink, change, field, names):
    response = api.post("/api/v1/emails", {**EMAIL, **change})
    refused_api(response, field, names=names)
    assert Email.objects.count() == 0 and smtp_sink.received == []


@pytest.mark.parametrize("header", FORBIDDEN_HEADERS)
def test_api_refuses_headers_outside_the_allowlist(api, sink_provider, smtp_sink, header):
    response = api.post("/api/v1/emails", {**EMAIL, "headers": {header: "x@example.org"}})
    refused_api(response, "headers", names=header)
    assert Email.objects.count() == 0 and smtp_sink.received == []


def test_api_allowlisted_headers_are_sent(api, sink_provider, smtp_sink):
    response = api.post("/api/v1/emails", {**EMAIL, "headers": ALLOWED_HEADERS})
    assert response.status_code == 201, response.content
    [received] = smtp_sink.received
    for name, value in ALLOWED_HEADERS.items():
        assert received.message[name] == value


@pytest.mark.parametrize(
    "raw",
    [
        '{"k": NaN}',
        '{"k": Infinity}',
        '{"k": -Infinity}',
        '{"k": 1e400}',
        '{"k": {"deep": [1, 2, NaN]}}',
    ],
    ids=["NaN", "Infinity", "-Infinity", "1e400", "nested NaN"],
)
def test_api_refuses_non_finite_metadata(api, sink_provider, smtp_sink, raw):
    body = json.dumps(EMAIL)[:-1] + f', "metadata": {raw}}}'
    refused_api(api.post("/api/v1/emails", body), "metadata", names="NaN or Infinity")
    assert Email.objects.count() == 0 and smtp_sink.received == []


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(EMAIL)[:-1] + f', "metadata": {{"x": {nested(3000)}}}}}',
        json.dumps(EMAIL)[:-1] + f', "metadata": {{"x": {nested(40)}}}}}',
        nested(100_000),
        '{"a":' * 50_000 + "1" + "}" * 50_000,
        json.dumps(EMAIL)[:-1] + f', "surprise": {nested(3000)}}}',
    ],
    ids=["3,000 deep in metadata", "40 deep", "100,000 [", "50,000 objects", "deep extra field"],
)
def test_api_deep_json_is_a_400_saying_so(api, sink_provider, body):
    problem = refused_api(api.post("/api/v1/emails", body), "body", status=400)
    assert "nested more than 32 levels" in problem["detail"]
    assert Email.objects.count() == 0


def test_api_deep_json_is_refused_on_the_provider_endpoints_too(api):
    response = api.post("/api/v1/providers", f'{{"kind": "smtp", "settings": {nested(5000)}}}')
    refused_api(response, "body", status=400)


def test_api_nul_in_idempotency_key_is_422(api, sink_provider):
    response = api.post("/api/v1/emails", EMAIL, headers={"Idempotency-Key": "k\x00"})
    refused_api(response, "Idempotency-Key", names="NUL")
    assert Email.objects.count() == 0


def test_api_every_bad_field_is_named_at_once(api, sink_provider):
    response = api.post(
        "/api/v1/emails",
        {
            **EMAIL,
            "subject": "a\x0bb",
            "headers": {"X-SMTPAPI": "{}"},
            "metadata": {"k": "\x00"},
            "attachments": [{"filename": "a.txt", "content": "%%%"}],
        },
    )
    fields = {error["field"] for error in refused_api(response, "subject")["errors"]}
    assert fields == {"subject", "headers", "metadata", "attachments[0].content"}


def test_api_metadata_within_the_limits_is_kept(api, sink_provider):
    metadata = {"order": 42, "tags": ["a", "b"], "nested": {"a": {"b": {"c": 1.5}}}, "ok": None}
    response = api.post("/api/v1/emails", {**EMAIL, "metadata": metadata})
    assert response.status_code == 201, response.content
    assert response.json()["metadata"] == metadata


def test_limits_follow_the_settings(api, sink_provider, settings):
    settings.MAX_SUBJECT_CHARS = 10
    settings.MAX_HEADERS = 1
    settings.MAX_REPLY_TO = 1
    response = api.post(
        "/api/v1/emails",
        {**EMAIL, "subject": "s" * 11, "headers": {"X-A": "1", "X-B": "2"},
         "reply_to": ["a@example.org", "b@example.org"]},
    )  # fmt: skip
    problem = refused_api(response, "subject", names="at most 10")
    assert {error["field"] for error in problem["errors"]} == {"subject", "headers", "reply_to"}


# POST /send_email/ ----------------------------------------------------------------------------

SEND = "/send_email/"
FORM = "application/x-www-form-urlencoded"


def legacy_fields(token: str, **overrides) -> dict:
    fields = {"to_email": "rcpt@example.org", "from_email": "sender@example.com",
              "subject": "Hello", "body_text": "Hello there.", "sent_via": ""}  # fmt: skip
    fields["TOKEN"] = token
    return {**fields, **overrides}


def legacy_post(client, encoding: str, data: dict):
    if encoding == "form":
        return client.post(SEND, urlencode(data, doseq=True), content_type=FORM)
    if encoding == "json":
        return client.post(SEND, json.dumps(data), content_type="application/json")
    return client.post(SEND, data)  # multipart


def refused_legacy(response, field: str, status: int = 400, names: str = "") -> dict:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert body["status"] == status and field in body["errors"], body
    if names:
        assert names in json.dumps(body["errors"][field], ensure_ascii=False), body
    assert len(response.content) < 5000
    return body


LEGACY_ATTACKS = {
    "200K display name": ({"to_email": LONG_NAME}, "to_email", "too long"),
    "201-character display name": ({"to_email": f"{'N' * 201} <a@example.org>"}, "to_email", "201"),
    "65-character local part": ({"to_email": "a" * 65 + "@example.org"}, "to_email", "64"),
    "8,000 recipients": ({"to_email": ", ".join(MANY_REPLY_TO)}, "to_email", "8000"),
    "60 to_email fields": ({"to_email": MANY_REPLY_TO[:60]}, "to_email", "60 recipients"),
    "999-character subject": ({"subject": "s" * 999}, "subject", "at most 998"),
    "NUL in subject": ({"subject": "hi\x00Bcc: victim@example.org"}, "subject", "NUL"),
    "NUL in body_text": ({"body_text": "body\x00"}, "body_text", "NUL"),
    "NUL in to_email": ({"to_email": "a\x00@example.org"}, "to_email", "NUL"),
    **{
        f"U+{ord(char):04X} in subject": ({"subject": f"hi{char}there"}, "subject", "U+")
        for char in CONTROLS
    },
    **{
        f"U+{ord(char):04X} in to_email": (
            {"to_email": f"Ann{char} <a@example.org>, b@example.org"},
            "to_email",
            "U+",
        )
        for char in CONTROLS
    },
    "U+000B in from_email": ({"from_email": "S\x0b <s@example.com>"}, "from_email", "U+000B"),
}


@pytest.mark.parametrize("encoding", ["form", "multipart", "json"])
@pytest.mark.parametrize(
    ("change", "field", "names"), LEGACY_ATTACKS.values(), ids=list(LEGACY_ATTACKS)
)
def test_send_email_refuses_with_400_naming_the_field(
    client, token, sink_provider, smtp_sink, encoding, change, field, names
):
    response = legacy_post(client, encoding, legacy_fields(token, **change))
    refused_legacy(response, field, names=names)
    assert Email.objects.count() == 0 and smtp_sink.received == []


@pytest.mark.parametrize(
    ("body", "field", "names"),
    [
        (nested(100_000), "body", "nested more than 32"),
        ('{"subject": ' + nested(3000) + "}", "body", "nested more than 32"),
        ('{"status": ' + nested(3000) + "}", "body", "nested more than 32"),
        ('{"subject": NaN}', "subject", "NaN"),
        ('{"subject": Infinity}', "subject", "NaN"),
        ('{"to_email": {"a": 1}}', "to_email", "text"),
        ('{"to_email": [["a@example.org"]]}', "to_email", "text"),
        ('{"body_text": true}', "body_text", "text"),
        ('{"subject": "\\ud800"}', "subject", "surrogate"),
        ('{"body_text": "x\\udc00"}', "body_text", "surrogate"),
    ],
    ids=["100,000 [", "3,000 deep field", "3,000 deep unused field", "NaN", "Infinity",
         "object", "nested list", "bool", "surrogate subject", "surrogate body"],
)  # fmt: skip
def test_send_email_json_body_attacks_are_400(client, token, sink_provider, body, field, names):
    if body.startswith("{"):
        fields = legacy_fields(token)
        body = json.dumps(fields)[:-1] + ", " + body[1:]  # the attack's key comes last: it wins
    response = client.post(SEND, body, content_type="application/json")
    refused_legacy(response, field, names=names)
    assert Email.objects.count() == 0


@pytest.mark.parametrize("encoding", ["form", "multipart", "json"])
def test_send_email_8000_to_email_fields_are_400(client, token, sink_provider, encoding):
    response = legacy_post(client, encoding, legacy_fields(token, to_email=MANY_REPLY_TO))
    # Django stops reading a form at DATA_UPLOAD_MAX_NUMBER_FIELDS (1000); JSON gets counted.
    refused_legacy(response, "body" if encoding != "json" else "to_email")
    assert Email.objects.count() == 0


def test_send_email_token_with_a_surrogate_is_403(client, sink_provider):
    body = json.dumps(legacy_fields("es_\ud800"))
    response = client.post(SEND, body, content_type="application/json")
    assert response.status_code == 403 and response.json()["message"] == "invalid token !!"


def test_send_email_still_takes_good_input(client, token, sink_provider, smtp_sink):
    to = '"Doe, Jo" <jo@example.org>, Zoë <z@example.org>'
    response = legacy_post(client, "form", legacy_fields(token, to_email=to, subject="A\tB"))
    assert response.status_code == 200, response.content
    assert smtp_sink.received[0].rcpt_tos == ["jo@example.org", "z@example.org"]


# The web send form ----------------------------------------------------------------------------


def web_form(provider, **overrides) -> dict:
    data = {"from_email": "Alice <alice@example.com>", "to": "bob@example.org", "cc": "",
            "bcc": "", "reply_to": "", "subject": "Report", "text": "Numbers.", "html": "",
            "submission": "s-1", "provider": str(provider.pk)}  # fmt: skip
    return {**data, **overrides}


WEB_ATTACKS = {
    "200K display name": ({"to": LONG_NAME}, "to", "at most"),
    "201-character display name": ({"to": f"{'N' * 201} <bob@example.org>"}, "to", "201"),
    "65-character local part": ({"cc": "a" * 65 + "@example.org"}, "cc", "64"),
    "11 reply-to": ({"reply_to": ", ".join(MANY_REPLY_TO[:11])}, "reply_to", "at most 10"),
    "8,000 reply-to": ({"reply_to": ", ".join(MANY_REPLY_TO)}, "reply_to", "at most"),
    "999-character subject": ({"subject": "s" * 999}, "subject", "at most 998"),
    "NUL in subject": ({"subject": "hi\x00there"}, "subject", "Null"),
    "NUL in text": ({"text": "body\x00"}, "text", "Null"),
    "NUL in html": ({"html": "<p>\x00</p>"}, "html", "Null"),
    **{
        f"U+{ord(char):04X} in subject": ({"subject": f"hi{char}there"}, "subject", "U+")
        for char in CONTROLS
    },
    **{
        f"U+{ord(char):04X} in to": ({"to": f"Bob{char} <bob@example.org>"}, "to", "U+")
        for char in CONTROLS
    },
    "U+000B in from": ({"from_email": "A\x0bB <alice@example.com>"}, "from_email", "U+000B"),
}


@pytest.mark.parametrize(("change", "field", "names"), WEB_ATTACKS.values(), ids=list(WEB_ATTACKS))
def test_send_form_refuses_naming_the_field(
    client, member, sink_provider, smtp_sink, change, field, names
):
    response = client.post("/send/", web_form(sink_provider, **change))
    # The form is shown again with the error beside the field (mailer/web/emails.py renders it).
    assert response.status_code < 500
    errors = response.context["form"].errors
    assert field in errors, errors
    assert any(names in message for message in errors[field]), errors[field]
    assert Email.objects.count() == 0 and smtp_sink.received == []


@pytest.mark.parametrize(
    "filename", ["a\x00b.txt", "a\x0bb.txt", "a\x85b.txt", "a\u2028b.txt", "f" * 300 + ".txt"]
)
def test_send_form_attachment_names_arrive_clean(client, member, sink_provider, smtp_sink,
                                                 filename):  # fmt: skip
    # Django's multipart parser drops control characters from upload names and cuts them to
    # 255 characters; validation would refuse the rest, as the API tests show.
    upload = SimpleUploadedFile(filename, b"notes", content_type="text/plain")
    response = client.post("/send/", {**web_form(sink_provider), "attachments": [upload]})
    assert response.status_code == 302
    [attachment] = Email.objects.get().attachments
    assert attachment["filename"].isprintable() and len(attachment["filename"]) <= 255
    [received] = smtp_sink.received
    assert [part.get_filename() for part in received.message.iter_attachments()] == [
        attachment["filename"]
    ]


def test_send_form_refuses_too_many_attachments(client, member, sink_provider, settings):
    settings.MAX_ATTACHMENTS = 2
    uploads = [SimpleUploadedFile(f"{i}.txt", b"x", content_type="text/plain") for i in range(3)]
    response = client.post("/send/", {**web_form(sink_provider), "attachments": uploads})
    assert "at most 2" in response.context["form"].errors["attachments"][0]
    assert Email.objects.count() == 0


# Validation is linear: oversized input is refused at once -------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"headers": {"X-Big": BIG_HEADER}}, "headers"),
        ({"headers": {BIG_HEADER: "v"}}, "headers"),
        ({"to": [LONG_NAME]}, "to"),
        ({"from_email": LONG_NAME}, "from"),
        ({"reply_to": MANY_REPLY_TO}, "reply_to"),
        ({"to": MANY_REPLY_TO}, "to"),
        ({"subject": BIG_HEADER}, "subject"),
        ({"metadata": {"k": [0] * 1_000_000}}, "metadata"),
        ({"metadata": {f"k{i}": i for i in range(100_000)}}, "metadata"),
        (
            {"attachments": [Attachment("a" * 1_000_000, "text/plain", b"x")] * 10},
            "attachments",
        ),
    ],
    ids=["900 KB header", "900 KB header name", "200K display name", "200K from",
         "8,000 reply-to", "8,000 to", "900 KB subject", "1M metadata items",
         "100K metadata keys", "1 MB filenames"],
)  # fmt: skip
def test_validation_refuses_oversized_input_fast(overrides, field):
    email = outgoing(**overrides)
    started = time.perf_counter()
    with pytest.raises(InvalidEmail) as caught:
        validate(email)
    elapsed = time.perf_counter() - started
    assert field in caught.value.errors
    assert elapsed < 1.0, f"validation took {elapsed:.2f} s"
    assert sum(len(m) for ms in caught.value.errors.values() for m in ms) < 2000


def test_api_refuses_the_900_kb_header_fast(api, sink_provider):
    started = time.perf_counter()
    response = api.post("/api/v1/emails", {**EMAIL, "headers": {"X-Big": BIG_HEADER}})
    assert time.perf_counter() - started < 2.0
    refused_api(response, "headers")


# Live: gunicorn with production settings -------------------------------------------------------


def post_raw(server, body: bytes, token: str, headers: dict | None = None) -> tuple[int, str, dict]:
    response = server.api(token).post("/api/v1/emails", body, headers=headers)
    return response.status_code, response["Content-Type"], response.json()


def test_live_hostile_input_is_refused_fast_and_the_server_stays_healthy(tmp_path):
    sink = SmtpServer().start()
    server = start_app_server(tmp_path, workers=2)
    try:
        token = create_account(server, "x", smtp_port=sink.port)
        email = json.dumps(EMAIL)[:-1]
        nul = json.dumps({**EMAIL, "subject": "hi\x00Bcc: v@example.org"})
        attacks = {
            "900 KB header": (json.dumps({**EMAIL, "headers": {"X-Big": BIG_HEADER}}), "headers"),
            "NaN metadata": (email + ', "metadata": {"x": NaN}}', "metadata"),
            "deep nesting": (email + f', "metadata": {{"x": {nested(3000)}}}}}', "body"),
            "100,000 [": (nested(100_000), "body"),
            "NUL subject": (nul, "subject"),
            "X-SMTPAPI": (
                json.dumps({**EMAIL, "headers": {"X-SMTPAPI": '{"to": ["v@example.org"]}'}}),
                "headers",
            ),
            "lone surrogate": (email + ', "html": "\\ud800"}', "html"),
        }  # fmt: skip
        for name, (body, field) in attacks.items():
            started = time.perf_counter()
            status, content_type, problem = post_raw(server, body.encode(), token)
            elapsed = time.perf_counter() - started
            assert 400 <= status < 500, (name, status, problem)
            assert content_type == "application/problem+json", name
            assert field in [e["field"] for e in problem.get("errors", [])], (name, problem)
            assert elapsed < 5, f"{name} took {elapsed:.1f} s"
        assert server.api().get("/healthz").status_code == 200
        assert server.factory("rows", "mailer.Email") == [], "nothing may be stored"
        assert sink.received == [], "nothing may reach the SMTP server"
        # Both workers still serve: a good email goes out.
        for _ in range(2):
            status, _, body = post_raw(server, json.dumps(EMAIL).encode(), token)
            assert status == 201, body
        assert len(sink.received) == 2
        log = (tmp_path / "gunicorn.log").read_text()
        assert "WORKER TIMEOUT" not in log and "Traceback" not in log, log[-3000:]
    finally:
        server.stop()
        sink.stop()
