"""The health page's delivered / bounced / complained rates from stored DeliveryEvent rows:
the selector's buckets (hourly over 24 hours, daily over 7 days) in one aggregate query, and
the page's SVG chart, range toggle and table, through the Django test client."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from mailer.models import DeliveryEvent
from mailer.selectors.stats import delivery_rates
from mailer.vocabulary import EventType
from tests.web.test_emails_pages import PageAudit
from tests.web.test_provider_pages import add, web_fixture  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 34, 56, tzinfo=UTC)


def events(config, event_type: str, at: datetime, count: int = 1) -> None:
    """`count` events of the provider config of this type, all at `at`."""
    DeliveryEvent.objects.bulk_create(
        DeliveryEvent(
            account=config.account,
            provider=config,
            provider_kind=config.kind,
            type=event_type,
            recipient=f"r{n}@example.org",
            occurred_at=at,
            provider_event_id=uuid.uuid4().hex,
        )
        for n in range(count)
    )


@pytest.fixture
def known_events(account, other_account):
    """main: this hour 8 delivered, 1 bounced, 1 complained; 3 hours ago 2 bounced; yesterday's
    noon (outside 24 h, inside 7 d) 5 delivered. quiet: none. Not counted: opens, events older
    than the range, another account's."""
    main, quiet = add(account, name="main"), add(account, name="quiet")
    this_hour = NOW.replace(minute=5)
    events(main, EventType.DELIVERED, this_hour, 8)
    events(main, EventType.BOUNCED, this_hour)
    events(main, EventType.COMPLAINED, this_hour.replace(minute=30))
    events(main, EventType.OPENED, this_hour, 4)
    events(main, EventType.DEFERRED, this_hour, 2)
    events(main, EventType.BOUNCED, NOW - timedelta(hours=3), 2)
    events(main, EventType.DELIVERED, NOW - timedelta(days=1, minutes=35), 5)  # 11:59 yesterday
    events(main, EventType.DELIVERED, NOW - timedelta(days=9))
    events(add(other_account, name="theirs"), EventType.BOUNCED, this_hour, 7)
    return main, quiet


def test_hourly_rates_over_24_hours_in_one_aggregate_query(account, known_events):
    with CaptureQueriesContext(connection) as queries:
        rows = delivery_rates(account=account, span="24h", now=NOW, providers=list(known_events))
    assert len(queries) == 1  # grouped by provider and hour: not one per provider or bucket
    assert [r.provider.name for r in rows] == ["main", "quiet"]
    buckets = rows[0].buckets
    assert len(buckets) == 24
    assert buckets[-1].start == NOW.replace(minute=0, second=0)
    assert buckets[0].start == NOW.replace(minute=0, second=0) - timedelta(hours=23)
    current = buckets[-1]
    assert current.counts == {"delivered": 8, "bounced": 1, "complained": 1}
    assert current.rate("delivered") == 0.8 and current.rate("complained") == 0.1
    assert buckets[-4].counts == {"delivered": 0, "bounced": 2, "complained": 0}
    assert buckets[-4].rate("bounced") == 1.0
    empty = buckets[-2]
    assert empty.total == 0 and empty.rate("delivered") is None  # no events, not 0 %
    assert sum(b.total for b in buckets) == 12  # yesterday's 11:59 is outside the 24 hours
    assert rows[0].overall.counts == {"delivered": 8, "bounced": 3, "complained": 1}
    assert all(b.total == 0 for b in rows[1].buckets)


def test_daily_rates_over_7_days(account, known_events):
    rows = delivery_rates(account=account, span="7d", now=NOW)  # the providers read too
    main = rows[0].buckets
    assert len(main) == 7
    assert [b.start for b in main] == [datetime(2026, 3, day, tzinfo=UTC) for day in range(4, 11)]
    assert main[-1].counts == {"delivered": 8, "bounced": 3, "complained": 1}
    assert main[-2].counts == {"delivered": 5, "bounced": 0, "complained": 0}
    assert sum(b.total for b in main) == 17  # nine days ago is outside the 7 days


def test_day_buckets_follow_the_current_time_zone(account, settings):
    settings.TIME_ZONE = "America/New_York"  # UTC-4 on 10 March 2026 (DST began on the 8th)
    main = add(account, name="main")
    events(main, EventType.DELIVERED, datetime(2026, 3, 10, 3, 0, tzinfo=UTC))  # 9 March, 23:00
    events(main, EventType.BOUNCED, datetime(2026, 3, 10, 5, 0, tzinfo=UTC))  # 10 March, 01:00
    with timezone.override("America/New_York"):
        [row] = delivery_rates(account=account, span="7d", now=NOW)
    assert [b.start.utcoffset() for b in row.buckets[-3:]] == [
        timedelta(hours=-h) for h in (5, 4, 4)
    ]
    assert row.buckets[-1].counts["bounced"] == 1 and row.buckets[-2].counts["delivered"] == 1


def test_the_page_draws_bars_and_a_table_saying_no_events_where_empty(web, account):
    main = add(account, name="main")
    now = timezone.now()
    events(main, EventType.DELIVERED, now, 3)
    events(main, EventType.BOUNCED, now)
    page = web("get", "/health/").content.decode()
    section = page.split('id="rates-heading"')[1]
    chart = section.split(f'id="rates-{main.pk}"')[1].split("</svg>")[0]
    assert 'role="img"' in chart
    assert (
        "main, last 24 hours, per hour: 75% delivered (3), 25% bounced (1), 0% complained (0)"
        in chart
    )
    assert chart.count("<g data-bucket=") == 24
    assert re.search(r'<rect data-type="delivered" fill="#146c43" x="\d+" y="25.000" width="8" '
                     r'height="75.000"/>', chart)  # fmt: skip
    assert chart.count("no events</title>") == 23
    table = section.split('class="table table-sm align-middle rates-table')[1].split("</table>")[0]
    assert table.count("<tr data-bucket=") == 24
    assert (
        table.count('<td colspan="3" class="text-center text-body-secondary">no events</td>') == 23
    )
    assert re.search(r'data-type="bounced">25% <span[^>]*>\(1\)</span>', table)
    assert "0 %" not in table and ">0% <" in table  # complained: 0 % of 4 events, a real rate
    nav = section.split("</nav>")[0]
    assert 'href="?range=24h#rates-heading" aria-current="page"' in nav
    assert 'href="?range=7d#rates-heading"' in nav


def test_the_range_toggle_shows_days_and_ignores_nonsense(web, account):
    main = add(account, name="main")
    events(main, EventType.COMPLAINED, timezone.now() - timedelta(days=2))
    week = web("get", "/health/", {"range": "7d"}).content.decode()
    assert 'href="?range=7d#rates-heading" aria-current="page"' in week
    chart = week.split(f'id="rates-{main.pk}"')[1].split("</svg>")[0]
    assert chart.count("<g data-bucket=") == 7 and "100% complained (1)" in chart
    assert "Day</th>" in week
    odd = web("get", "/health/", {"range": "1y"})
    assert odd.status_code == 200
    assert 'href="?range=24h#rates-heading" aria-current="page"' in odd.content.decode()


def test_the_page_keeps_to_the_csp_and_its_headings_nest(web, account, known_events):
    for query in ({}, {"range": "7d"}):
        audit = PageAudit()
        audit.feed(web("get", "/health/", query).content.decode())
        assert audit.problems == []
        assert audit.headings[0] == 1
        assert all(b - a <= 1 for a, b in zip(audit.headings, audit.headings[1:], strict=False))
    assert "theirs" not in web.bodies[-1]
