"""Provider health numbers: attempt outcomes and latency per provider over a recent window, and
the delivered / bounced / complained rates the providers' events show, per hour or day."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta

from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber, Trunc
from django.utils import timezone

from mailer.models import DeliveryAttempt, DeliveryEvent, ProviderConfig
from mailer.vocabulary import EventType, Outcome

HEALTH_WINDOW = timedelta(hours=24)
PERCENTILES = (50, 95)


@dataclass
class ProviderHealth:
    """One provider's attempts in the window: counts per outcome and latency percentiles (ms)
    of the attempts that reached it (not `skipped`); None when there were none."""

    provider: ProviderConfig
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(Outcome, 0))
    latency: dict[int, int | None] = field(default_factory=lambda: dict.fromkeys(PERCENTILES))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def share(self, outcome: str) -> float:
        """The share of all attempts with this outcome, from 0 to 1."""
        return self.counts[outcome] / self.total if self.total else 0.0

    @property
    def failing(self) -> int:
        """Attempts where the provider itself failed (what its circuit counts)."""
        return self.counts["provider_error"] + self.counts["ambiguous"]


def provider_health(*, account, since: datetime | None = None) -> list[ProviderHealth]:
    """The account's providers, in failover order, with their attempts since `since` (default:
    the last 24 hours).

    Two queries whatever the number of providers: counts per outcome grouped by provider, and
    the percentiles by nearest rank with window functions (ROW_NUMBER and COUNT partitioned by
    provider), which SQLite 3.25+ and PostgreSQL both run. Only the rows at the wanted ranks
    come back (two per provider), so memory stays flat; the database sorts each provider's
    window by duration, which is fine for hundreds of thousands of attempts a day. Beyond that,
    keep hourly rollups (or use PostgreSQL's percentile_cont) instead.
    """
    since = since or timezone.now() - HEALTH_WINDOW
    providers = list(ProviderConfig.objects.filter(account=account).order_by("priority", "id"))
    health = {p.pk: ProviderHealth(provider=p) for p in providers}
    # provider_id IN (...) plus the time range: the (provider, started_at) index serves both.
    attempts = DeliveryAttempt.objects.filter(provider_id__in=health, started_at__gte=since)
    _count_outcomes(attempts, health)
    _latency_percentiles(attempts.exclude(outcome=Outcome.SKIPPED), health)
    return list(health.values())


def _count_outcomes(attempts, health: dict[int, ProviderHealth]) -> None:
    per_outcome = {o: Count("id", filter=Q(outcome=o)) for o in Outcome}
    for row in attempts.values("provider_id").annotate(**per_outcome).order_by():
        health[row["provider_id"]].counts = {o: row[o] for o in Outcome}


def _latency_percentiles(attempts, health: dict[int, ProviderHealth]) -> None:
    ranked = attempts.annotate(
        rank=Window(RowNumber(), partition_by=F("provider_id"), order_by=F("duration_ms").asc()),
        size=Window(Count("id"), partition_by=F("provider_id")),
    )
    # Nearest rank: the p-th percentile is the value at rank ceil(p * size / 100), i.e. the rank
    # r with 100 * r >= p * size > 100 * (r - 1). Integer arithmetic: the same on every database.
    wanted = Q()
    for p in PERCENTILES:
        wanted |= Q(rank100__gte=F("size") * p, rank100__lt=F("size") * p + 100)
    rows = ranked.annotate(rank100=F("rank") * 100).filter(wanted)
    for row in rows.values("provider_id", "duration_ms", "rank", "size"):
        for p in PERCENTILES:
            if 100 * row["rank"] >= p * row["size"] > 100 * (row["rank"] - 1):
                health[row["provider_id"]].latency[p] = row["duration_ms"]


# Delivery event rates ---------------------------------------------------------------------------

RATE_TYPES = (EventType.DELIVERED, EventType.BOUNCED, EventType.COMPLAINED)


@dataclass(frozen=True)
class RateRange:
    """A choice of the health page: `buckets` of one `unit` (a Trunc kind), the current last."""

    key: str
    label: str
    unit: str
    buckets: int


RATE_RANGES = {
    "24h": RateRange("24h", "Last 24 hours", "hour", 24),
    "7d": RateRange("7d", "Last 7 days", "day", 7),
}


@dataclass
class RateBucket:
    """One hour or day of a provider's events: how many of each of RATE_TYPES."""

    start: datetime
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RATE_TYPES, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def rate(self, event_type: str) -> float | None:
        """The events of this type over the bucket's delivered + bounced + complained events,
        from 0 to 1; None when it has none (no events is not a rate of 0)."""
        return self.counts[event_type] / self.total if self.total else None


@dataclass
class ProviderRates:
    provider: ProviderConfig
    buckets: list[RateBucket]

    @property
    def overall(self) -> RateBucket:
        """The whole range as one bucket."""
        whole = RateBucket(self.buckets[0].start)
        for bucket in self.buckets:
            for event_type, count in bucket.counts.items():
                whole.counts[event_type] += count
        return whole


def bucket_starts(span: RateRange, now: datetime) -> tuple[list[datetime], datetime]:
    """The starts of the range's buckets, oldest first, in the current time zone (as the
    database truncates), and where the last one ends."""
    zone = timezone.get_current_timezone()
    local = timezone.localtime(now, zone)
    if span.unit == "hour":  # whole hours apart in UTC, whatever the zone's DST does
        current = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        starts = [current - timedelta(hours=n) for n in range(span.buckets - 1, -1, -1)]
        return [s.astimezone(zone) for s in starts], (current + timedelta(hours=1)).astimezone(zone)
    today = local.date()
    days = [today - timedelta(days=n) for n in range(span.buckets - 1, -1, -1)]
    end = datetime.combine(today + timedelta(days=1), time(), tzinfo=zone)
    return [datetime.combine(day, time(), tzinfo=zone) for day in days], end


def delivery_rates(
    *, account, span: str = "24h", now: datetime | None = None, providers=None
) -> list[ProviderRates]:
    """The account's providers (in failover order, or `providers` as given) with their
    delivered / bounced / complained events per bucket of the range (RATE_RANGES), the current
    hour or day last. Every bucket is there, empty ones too.

    One aggregate query whatever the number of providers and buckets: the events in the range
    grouped by provider and Trunc(occurred_at) (the database truncates, SQLite and PostgreSQL
    alike, in the current time zone), served by the (provider, occurred_at) index.
    """
    chosen = RATE_RANGES[span]
    starts, end = bucket_starts(chosen, now or timezone.now())
    if providers is None:
        providers = ProviderConfig.objects.filter(account=account).order_by("priority", "id")
    rates = {p.pk: ProviderRates(p, [RateBucket(start) for start in starts]) for p in providers}
    if not rates:
        return []
    position = {start.timestamp(): n for n, start in enumerate(starts)}
    per_type = {str(t): Count("id", filter=Q(type=t)) for t in RATE_TYPES}
    rows = (
        DeliveryEvent.objects.filter(
            account=account,
            provider_id__in=list(rates),
            occurred_at__gte=starts[0],
            occurred_at__lt=end,
            type__in=RATE_TYPES,
        )
        .annotate(bucket=Trunc("occurred_at", chosen.unit, tzinfo=timezone.get_current_timezone()))
        .values("provider_id", "bucket")
        .annotate(**per_type)
        .order_by()
    )
    for row in rows:
        n = position.get(row["bucket"].timestamp())
        if n is not None:
            rates[row["provider_id"]].buckets[n].counts = {t: row[str(t)] for t in RATE_TYPES}
    return list(rates.values())
