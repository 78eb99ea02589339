"""API token and provider health pages through the Django test client."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailer.models import ApiToken, DeliveryAttempt, Email
from mailer.selectors.stats import provider_health
from mailer.services import token_create
from tests.web.test_provider_pages import add, error_of, web_fixture  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db


# API tokens -----------------------------------------------------------------------------------


def test_token_is_shown_once_works_then_is_revoked_and_refused(web, client, account):
    # Shown in the answer to the POST that created it (never stored to be shown later).
    shown = web("post", "/tokens/", {"name": "billing app"})
    assert shown.status_code == 200
    assert "no-store" in shown["Cache-Control"]
    field = re.search(r'<input[^>]*id="new-token"[^>]*>', shown.content.decode()).group(0)
    raw = re.search(r'value="([^"]+)"', field).group(1)
    assert "readonly" in field and raw.startswith("es_")
    assert 'data-copy-target="new-token"' in shown.content.decode()
    assert "won't be shown again" in shown.content.decode()
    token = ApiToken.objects.get(account=account)
    assert token.name == "billing app" and raw.startswith(token.prefix) and raw not in token.digest
    again = web("get", "/tokens/created/").content.decode()
    assert raw not in again and "shown only once" in again
    auth = {"Authorization": f"Bearer {raw}"}
    assert client.get("/api/v1/emails", headers=auth).status_code == 200
    listing = web("get", "/tokens/").content.decode()
    assert raw not in listing and f"{token.prefix}…" in listing and "active</span>" in listing
    confirm = web("get", f"/tokens/{token.pk}/revoke/").content.decode()
    assert "Revoke the token billing app?" in confirm
    assert client.get("/api/v1/emails", headers=auth).status_code == 200  # GET did not revoke
    assert web("post", f"/tokens/{token.pk}/revoke/").status_code == 302
    assert client.get("/api/v1/emails", headers=auth).status_code == 401
    listing = web("get", "/tokens/").content.decode()
    assert "revoked</span>" in listing and "Revoked the token billing app" in listing


def test_token_list_shows_last_use_and_needs_a_name(web, client, account):
    response = web("post", "/tokens/", {"name": ""})
    assert response.status_code == 200 and "This field is required" in error_of(response, "name")
    raw = re.search(r'id="new-token"[^>]*value="([^"]+)"|value="([^"]+)"[^>]*id="new-token"',
                    web("post", "/tokens/", {"name": "ci"}).content.decode())  # fmt: skip
    raw = raw.group(1) or raw.group(2)
    assert "never" in web("get", "/tokens/").content.decode()
    client.get("/api/v1/emails", headers={"Authorization": f"Bearer {raw}"})
    assert ">never<" not in web("get", "/tokens/").content.decode()


def test_another_accounts_token_is_not_found(web, other_account):
    theirs, _ = token_create(account=other_account, name="theirs")
    assert web("get", f"/tokens/{theirs.pk}/revoke/").status_code == 404
    assert web("post", f"/tokens/{theirs.pk}/revoke/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None and "theirs" not in web("get", "/tokens/").content.decode()


# Provider health ------------------------------------------------------------------------------


def attempts(config, outcome: str, durations: list[int], *, hours_ago: float = 1) -> None:
    email = Email.objects.create(
        account=config.account, from_email="a@example.com", to=["b@example.org"]
    )
    started = timezone.now() - timedelta(hours=hours_ago)
    DeliveryAttempt.objects.bulk_create(
        DeliveryAttempt(
            email=email,
            provider=config,
            provider_kind=config.kind,
            provider_name=config.name,
            outcome=outcome,
            started_at=started,
            duration_ms=ms,
        )
        for ms in durations
    )


@pytest.fixture
def known_attempts(account, other_account):
    """failing: 6 provider errors, 2 ambiguous, 2 sent; healthy: 20 sent, 1 rejected, 3 skipped;
    idle: none. Old attempts and another account's are not counted."""
    failing, healthy, idle = (add(account, name=n) for n in ("failing", "healthy", "idle"))
    attempts(failing, "provider_error", [1000, 2000, 3000, 4000, 5000, 6000])
    attempts(failing, "ambiguous", [10000, 10000])
    attempts(failing, "sent", [100, 200])
    attempts(healthy, "sent", list(range(10, 210, 10)))
    attempts(healthy, "rejected", [5])
    attempts(healthy, "skipped", [0, 0, 0])
    attempts(healthy, "provider_error", [99999], hours_ago=25)
    attempts(add(other_account, name="theirs"), "provider_error", [1, 2, 3])
    return failing, healthy, idle


def test_health_numbers_for_known_attempts_in_two_queries(account, known_attempts):
    with CaptureQueriesContext(connection) as queries:
        rows = provider_health(account=account)
    assert len(queries) == 3  # the providers, the counts, the percentiles: not one per provider
    by_name = {row.provider.name: row for row in rows}
    assert [row.provider.name for row in rows] == ["failing", "healthy", "idle"]
    assert by_name["failing"].counts == {
        "sent": 2,
        "rejected": 0,
        "provider_error": 6,
        "ambiguous": 2,
        "skipped": 0,
    }
    assert by_name["failing"].share("provider_error") == 0.6 and by_name["failing"].failing == 8
    # Nearest rank over 10 sorted durations: p50 is the 5th, p95 the 10th.
    assert by_name["failing"].latency == {50: 3000, 95: 10000}
    assert by_name["healthy"].counts == {
        "sent": 20,
        "rejected": 1,
        "provider_error": 0,
        "ambiguous": 0,
        "skipped": 3,
    }
    # 21 non-skipped (skipped never reached the provider): p50 rank 11, p95 rank 20.
    assert by_name["healthy"].latency == {50: 100, 95: 190}
    assert by_name["idle"].total == 0 and by_name["idle"].latency == {50: None, 95: None}


def test_health_page_draws_a_bar_per_provider_and_a_table(web, known_attempts):
    failing, healthy, _ = known_attempts
    page = web("get", "/health/").content.decode()
    bar = page.split(f'id="health-{failing.pk}"')[1].split("</svg>")[0]
    assert (
        'role="img"' in bar
        and "failing: 2 sent (20%), 6 provider error (60%), 2 ambiguous (20%)" in bar
    )
    assert re.search(r'class="bar-provider_error"[^>]*x="20.000" y="0" width="60.000"', bar)
    assert "8 failed" in bar
    healthy_bar = page.split(f'id="health-{healthy.pk}"')[1].split("</svg>")[0]
    assert "bar-provider_error" not in healthy_bar and 'width="83.333"' in healthy_bar
    assert "idle: no attempts" in page
    row = page.split(f'<tr data-provider="{failing.pk}">')[1].split("</tr>")[0]
    assert re.search(r'data-outcome="provider_error">6 <span[^>]*>\(60%\)', row)
    assert "3000 ms" in row and "10000 ms" in row
    assert "theirs" not in page
