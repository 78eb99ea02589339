"""Item 6: webhook ingestion (Postmark Delivery records POSTed to /webhooks/in/<token>/, HTTP Basic
credentials) against the trivial view's requests/s, both from 8 clients for the same time; then
the stored DeliveryEvent rows are counted against the distinct records posted."""

from __future__ import annotations

import secrets

from bench.context import CONCURRENCY
from bench.report import spread

TARGET = 0.25  # events/s answered 200 over the trivial view's requests/s


def setup(bench) -> dict:
    """An account of its own with a Postmark provider config holding webhook credentials (its
    own, so items 1-5's accounts and failover orders are unchanged). It never sends."""
    from django.db import connections

    from harness.factories import make_account, make_provider

    user = make_account("hooks")
    username = f"bench-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(24)
    config = make_provider(
        user,
        "postmark",
        name="postmark",
        secrets={
            "server_token": "bench-server-token",
            "webhook_username": username,
            "webhook_password": password,
        },
    )
    connections.close_all()
    return {
        "config_id": config.pk,
        "path": f"/webhooks/in/{config.webhook_token}/",
        "username": username,
        "password": password,
    }


def stored_rows(config_id: int, prefix: str) -> int:
    """DeliveryEvent rows of the config whose message id is one of this run's (the copy of the
    database the app writes, read from the bench process)."""
    from django.db import connections

    from mailer.models import DeliveryEvent

    count = DeliveryEvent.objects.filter(
        provider_id=config_id, provider_message_id__startswith=f"{prefix}-"
    ).count()
    connections.close_all()
    return count


def _job(hook: dict, seconds: float, prefix: str) -> dict:
    return {
        "kind": "webhook",
        "path": hook["path"],
        "username": hook["username"],
        "password": hook["password"],
        "prefix": prefix,
        "concurrency": CONCURRENCY,
        "seconds": seconds,
        "repeat_every": 10,
    }


def _repeat(bench, hook: dict, repeat: int) -> dict:
    """One trivial-view run, then one webhook run; then the rows that run stored."""
    seconds = bench.sizes.webhook_seconds
    trivial = bench.load_with_cpu(
        {"kind": "trivial", "concurrency": CONCURRENCY, "seconds": seconds}
    )
    prefix = f"bench-r{repeat + 1}-{secrets.token_hex(3)}"
    hooks = bench.load_with_cpu(_job(hook, seconds, prefix))
    stored = stored_rows(hook["config_id"], prefix)
    return {
        "trivial": trivial,
        "webhook": hooks,
        "stored_rows": stored,
        "rows_match": stored == hooks["distinct_posted"],
        "ratio": hooks["rate"] / trivial["rate"] if trivial["rate"] else None,
        "ratio_p50": hooks["p50_ms"] / trivial["p50_ms"] if trivial["p50_ms"] else None,
        "ratio_p99": hooks["p99_ms"] / trivial["p99_ms"] if trivial["p99_ms"] else None,
    }


def run(bench) -> None:
    s = bench.sizes
    bench.log(
        f"6. webhook ingestion (Postmark Delivery records) vs the trivial view, "
        f"{CONCURRENCY} clients for {s.webhook_seconds:g} s each"
    )
    hook = setup(bench)
    # Warm-up: each worker imports the Postmark events module and opens its first connections.
    bench.load(_job(hook, 1.0, f"warm-{secrets.token_hex(3)}"))
    bench.load({"kind": "trivial", "concurrency": CONCURRENCY, "seconds": 0.5})
    runs = []
    for repeat in range(s.repeats):
        runs.append(_repeat(bench, hook, repeat))
        r = runs[-1]
        w, t = r["webhook"], r["trivial"]
        bench.log(
            f"   repeat {repeat + 1}: webhooks {w['rate']:.0f}/s ({w['statuses']}, "
            f"p50/p99 {w['p50_ms']:.1f}/{w['p99_ms']:.1f} ms), trivial {t['rate']:.0f}/s "
            f"(p50/p99 {t['p50_ms']:.1f}/{t['p99_ms']:.1f} ms), ratio {r['ratio']:.2f}; "
            f"{w['distinct_posted']} distinct records + {w['repeats_posted']} repeats posted, "
            f"{r['stored_rows']} rows stored" + ("" if r["rows_match"] else " (MISMATCH)")
        )
    ratio = spread([r["ratio"] for r in runs])
    distinct = sum(r["webhook"]["distinct_posted"] for r in runs)
    stored = sum(r["stored_rows"] for r in runs)
    item = {
        "runs": runs,
        "webhook_rate": spread([r["webhook"]["rate"] for r in runs]),
        "trivial_rate": spread([r["trivial"]["rate"] for r in runs]),
        "ratio": ratio,
        "webhook_p50_ms": spread([r["webhook"]["p50_ms"] for r in runs]),
        "webhook_p99_ms": spread([r["webhook"]["p99_ms"] for r in runs]),
        "trivial_p50_ms": spread([r["trivial"]["p50_ms"] for r in runs]),
        "trivial_p99_ms": spread([r["trivial"]["p99_ms"] for r in runs]),
        "ratio_p50": spread([r["ratio_p50"] for r in runs]),
        "ratio_p99": spread([r["ratio_p99"] for r in runs]),
        "distinct_posted": distinct,
        "repeats_posted": sum(r["webhook"]["repeats_posted"] for r in runs),
        "answered_duplicates": sum(r["webhook"]["answered_duplicates"] for r in runs),
        "stored_rows": stored,
        "rows_match": all(r["rows_match"] for r in runs),
        "target": bench.targets["webhook_ingestion"],
        "met": ratio["median"] is not None and ratio["median"] >= TARGET,
    }
    bench.results["items"]["6_webhooks"] = item
    if not item["rows_match"]:
        bench.results.setdefault("check_failures", {})["6"] = (
            f"{stored} DeliveryEvent rows stored for {distinct} distinct records posted "
            f"(per repeat: "
            + ", ".join(f"{r['stored_rows']}/{r['webhook']['distinct_posted']}" for r in runs)
            + ")"
        )
        bench.log(f"   CHECK FAILED: {bench.results['check_failures']['6']}")
    if not item["met"]:
        bench.log("   below target: profiling the web workers under the same webhook load")
        job = _job(hook, min(8, s.webhook_seconds), f"prof-{secrets.token_hex(3)}")
        bench.profiled("webhook", {"web": bench.gunicorn.pid}, lambda: bench.load(job))
