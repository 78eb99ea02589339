"""Provider health numbers: attempt outcomes and latency per provider over a recent window."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from mailer.models import DeliveryAttempt, ProviderConfig
from mailer.vocabulary import Outcome

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
