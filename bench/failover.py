"""Item 3: failover cost, sends with the first provider blackholed against a healthy first one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bench.context import CONCURRENCY, CONNECT_TIMEOUT, THRESHOLD
from bench.report import spread
from mailer.vocabulary import Outcome


def _opening(attempts: list[dict], concurrency: int, statuses) -> dict:
    """When the threshold-th failure ended (= the circuit opened), read from the attempts."""
    failures = [a for a in attempts if a["outcome"] in ("provider_error", "ambiguous")]
    skips = [a for a in attempts if a["outcome"] == Outcome.SKIPPED]
    spans = sorted(
        (a["started_at"], a["started_at"] + timedelta(milliseconds=a["duration_ms"]))
        for a in failures
    )
    ends = sorted(end for _, end in spans)
    first = attempts[0]["started_at"]
    opened = ends[THRESHOLD - 1] if len(ends) >= THRESHOLD else None
    bound = THRESHOLD * CONNECT_TIMEOUT
    wall = (opened - first).total_seconds() if opened else None
    # Time during which at least one request was waiting on the dead provider, until the
    # circuit opened: what the breaker bounds. One client adds its own sends in between.
    waiting, reach = 0.0, first
    for start, end in spans:
        if opened is None or start >= opened:
            break
        start, end = max(start, reach), min(end, opened)
        if end > start:
            waiting += (end - start).total_seconds()
            reach = end
    return {
        "concurrency": concurrency,
        "failures": len(failures),
        "failure_codes": sorted({a["error_code"] for a in failures}),
        "seconds_to_open": wall,
        "seconds_waiting_before_open": waiting if opened else None,
        "seconds_to_first_skip": (skips[0]["started_at"] - first).total_seconds()
        if skips
        else None,
        "bound_seconds": bound,
        # An attempt can't end before its timeout: allow 5% for connect/close and scheduling.
        "met": opened is not None and waiting <= bound * 1.05,
        "sends": statuses,
    }


def circuit_opening(bench, concurrency: int) -> dict:
    """Reset the blackholed provider's circuit, send until a response shows it skipped, then
    read from the stored attempts when the threshold-th failure ended (= it opened)."""
    from django.db import connections

    from mailer.delivery.breaker import breaker
    from mailer.models import DeliveryAttempt

    breaker().reset(bench.blackhole.breaker_key)
    since = datetime.now(UTC)
    result = bench.load(
        {
            "kind": "post",
            "token": bench.accounts["failover"]["token"],
            "concurrency": concurrency,
            "seconds": 60,
            "stop_on_skipped": True,
        }
    )
    attempts = list(
        DeliveryAttempt.objects.filter(provider=bench.blackhole, started_at__gte=since)
        .order_by("started_at")
        .values("outcome", "error_code", "started_at", "duration_ms")
    )
    connections.close_all()
    return _opening(attempts, concurrency, result["statuses"])


def _repeat(bench, repeat: int) -> dict:
    """Healthy and open-circuit sends, alternating, with what the open circuit adds."""
    tokens = {name: bench.accounts[name]["token"] for name in ("healthy", "failover")}
    figures = bench.load({"kind": "alternate", "tokens": tokens,
                          "count": bench.sizes.failover_samples})  # fmt: skip
    healthy, open_ = figures["healthy"], figures["failover"]
    bench.log(
        f"   repeat {repeat + 1}: open circuit {open_['p50_ms']:.1f}/"
        f"{open_['p99_ms']:.1f} ms, healthy {healthy['p50_ms']:.1f}/"
        f"{healthy['p99_ms']:.1f} ms (p50/p99)"
    )
    return {
        "healthy": healthy,
        "open": open_,
        "ratio_p50": open_["p50_ms"] / healthy["p50_ms"],
        "ratio_p99": open_["p99_ms"] / healthy["p99_ms"],
        "added_p50_ms": open_["p50_ms"] - healthy["p50_ms"],
        "added_p99_ms": open_["p99_ms"] - healthy["p99_ms"],
    }


def run(bench) -> None:
    bench.log("3. failover: first provider blackholed, circuit open vs a healthy first provider")
    bench.warm_up(bench.accounts["healthy"]["token"])
    opening = [circuit_opening(bench, 1), circuit_opening(bench, CONCURRENCY)]
    for o in opening:
        bench.log(
            f"   {o['concurrency']} client(s): circuit opened {o['seconds_to_open']:.2f} s "
            f"after the first failure, {o['seconds_waiting_before_open']:.2f} s of it "
            f"waiting on the provider ({o['failures']} failures; bound "
            f"{o['bound_seconds']:.1f} s)"
        )
    runs = [_repeat(bench, repeat) for repeat in range(bench.sizes.repeats)]
    added = spread([r["added_p99_ms"] for r in runs])
    bench.results["items"]["3_failover"] = {
        "opening": opening,
        "runs": runs,
        "open_p50_ms": spread([r["open"]["p50_ms"] for r in runs]),
        "open_p99_ms": spread([r["open"]["p99_ms"] for r in runs]),
        "healthy_p50_ms": spread([r["healthy"]["p50_ms"] for r in runs]),
        "healthy_p99_ms": spread([r["healthy"]["p99_ms"] for r in runs]),
        "ratio_p50": spread([r["ratio_p50"] for r in runs]),
        "ratio_p99": spread([r["ratio_p99"] for r in runs]),
        "added_p50_ms": spread([r["added_p50_ms"] for r in runs]),
        "added_p99_ms": added,
        "met_added": added["median"] <= 5.0,
        "met_open": all(o["met"] for o in opening),
    }
