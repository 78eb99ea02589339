"""Pacing limits on the provider pages, through the Django test client with real Redis: the
add and edit forms' "Max per second" and "Max per day" (blank: no limit), and the list's use of
each provider's limits, read for every provider at once."""

from __future__ import annotations

import re

import pytest

from mailer.delivery import pacing
from mailer.delivery.pacing import Limits, pacer
from mailer.models import ProviderConfig
from tests.web.test_provider_pages import add, error_of, smtp, web_fixture  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

SES = {"settings": {"region": "eu-west-1"},
       "secrets": {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "aws-secret"}}  # fmt: skip


def pacing_of(page: str, config: ProviderConfig) -> str:
    card = page[page.index(f'id="provider-{config.pk}"') :]
    found = re.search(r'<dd class="provider-pacing">(.*?)</dd>', card[: card.index("</li>")])
    assert found, config.name
    return re.sub(r"<[^>]+>", "", found[1])


def limits(config: ProviderConfig) -> tuple[int | None, int | None]:
    config.refresh_from_db()
    return config.max_per_second, config.max_per_day


def test_add_stores_the_limits_and_blank_is_none(web, account):
    page = web("get", "/providers/add/smtp/").content.decode()
    assert '<legend class="h5">Pacing</legend>' in page
    assert re.search(r'<input type="number" name="max_per_second"[^>]*min="1"', page)
    assert 'for="id_max_per_day">Max per day <span' in page  # marked optional
    web("post", "/providers/add/smtp/", smtp(max_per_second="5", max_per_day="200"))
    web("post", "/providers/add/smtp/", smtp(name="open", max_per_second="", max_per_day=""))
    paced, open_ = ProviderConfig.objects.filter(account=account).order_by("priority")
    assert limits(paced) == (5, 200) and limits(open_) == (None, None)


def test_edit_shows_changes_and_clears_the_limits(web, account):
    config = add(account, max_per_second=5, max_per_day=200)
    page = web("get", f"/providers/{config.pk}/edit/").content.decode()
    assert re.search(r'name="max_per_second" value="5"', page)
    assert re.search(r'name="max_per_day" value="200"', page)
    response = web(
        "post", f"/providers/{config.pk}/edit/", smtp(max_per_second="", max_per_day="1000")
    )
    assert response.status_code == 302 and limits(config) == (None, 1000)
    web("post", f"/providers/{config.pk}/edit/", smtp(max_per_second="", max_per_day=""))
    assert limits(config) == (None, None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_per_second", "0", "greater than or equal to 1"),
        ("max_per_day", "-3", "greater than or equal to 1"),
        ("max_per_second", "100001", "less than or equal to 100000"),
        ("max_per_day", "lots", "Enter a whole number"),
    ],
)
def test_a_limit_below_one_or_past_the_most_is_refused_beside_it(
    web, account, field, value, message
):
    response = web("post", "/providers/add/smtp/", smtp(**{field: value}))
    assert response.status_code == 200 and message in error_of(response, field)
    assert not ProviderConfig.objects.exists()
    config = add(account, name="kept", max_per_second=5, max_per_day=200)
    response = web("post", f"/providers/{config.pk}/edit/", smtp(name="kept", **{field: value}))
    assert response.status_code == 200 and message in error_of(response, field)
    assert limits(config) == (5, 200)


def test_the_ses_form_says_it_counts_recipients(web):
    page = web("get", "/providers/add/ses/").content.decode()
    assert page.count("Amazon SES counts each recipient, not each email.") == 2
    assert "counts each recipient" not in web("get", "/providers/add/smtp/").content.decode()


def test_the_list_shows_each_providers_use_of_its_limits_read_once(web, account, monkeypatch):
    paced = add(account, name="paced", max_per_second=5, max_per_day=200)
    ses = add(account, "ses", name="aws", max_per_day=50_000, **SES)
    open_ = add(account, name="open")
    pacer().reserve(paced.breaker_key, Limits(5, 200), units=3)
    pacer().reserve(ses.breaker_key, Limits(None, 50_000), units=7)
    calls: list[list[str]] = []
    for cls in (pacing.RedisPacer, pacing.LocalPacer):
        original = cls.usage

        def spy(self, keys, original=original):
            calls.append(list(keys))
            return original(self, keys)

        monkeypatch.setattr(cls, "usage", spy)
    page = web("get", "/providers/").content.decode()
    assert calls == [[paced.breaker_key, ses.breaker_key]]  # one round trip for the list
    # The second's window may have passed on a slow machine; the day's count stays.
    assert re.fullmatch(
        r"[03] / 5 a second · 3 / 200 a day \(rolling 24 h\)", pacing_of(page, paced)
    )
    assert pacing_of(page, ses) == "7 / 50000 a day (rolling 24 h) · counts recipients"
    assert pacing_of(page, open_) == "no limits"


def test_without_the_counts_the_list_still_shows_the_limits(web, account, monkeypatch):
    paced = add(account, name="paced", max_per_second=5, max_per_day=200)
    monkeypatch.setattr(pacing.RedisPacer, "usage", lambda self, keys: {})
    monkeypatch.setattr(pacing.LocalPacer, "usage", lambda self, keys: {})
    page = web("get", "/providers/").content.decode()
    assert pacing_of(page, paced) == "5 a second · 200 a day (rolling 24 h)"
