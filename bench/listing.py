"""Item 2: sent-list latency, cache hit and miss, against a trivial JSON view on the same app."""

from __future__ import annotations

import json
import time

from bench.context import CACHE_PREFIX
from bench.report import spread

PAGE_PATH = "/api/v1/emails?page=1"  # the page whose cached answer the page floor serves
PAGE_FLOOR_PATH = "/bench/one-redis-trip-page"
API_FLOOR_PATH = "/bench/api/page?page=1"  # the same bytes behind the API's auth (floor_api.py)
API_DB_FLOOR_PATH = "/bench/api/page-from-db?page=1"  # page 1 by one hand-written SQL statement


def deep_cursor(bench, page: int) -> str:
    """The cursor whose keyset page is numbered page `page` (10 a page): the position after the
    last email of the page before it, read from the seeded database."""
    from django.db import connections

    from mailer.models import Email
    from mailer.selectors.cursors import Position

    before = Email.objects.filter(account=bench.accounts["lister"]["user"])
    row = before.order_by("-created_at", "-id").values("created_at", "id")[(page - 1) * 10 - 1]
    connections.close_all()
    return Position(row["created_at"], row["id"]).cursor()


def deepest_page(bench) -> int:
    """The deep page measured: 5000 (10 a page) with the full run's million emails."""
    return max(2, min(5000, bench.sizes.rows // 10))


def variants(bench) -> list[dict]:
    account_id = bench.accounts["lister"]["user"].pk
    bump = f"{CACHE_PREFIX}:1:emails:version:{account_id}"
    last_page = deepest_page(bench)
    cursor = f"/api/v1/emails?cursor={deep_cursor(bench, last_page)}"
    return [
        {"name": "trivial", "path": "/bench/trivial"},
        {"name": "floor_redis", "path": "/bench/one-redis-trip"},
        {"name": "floor_redis_page", "path": PAGE_FLOOR_PATH},
        {"name": "floor_api_page", "path": API_FLOOR_PATH, "auth": True},
        {"name": "floor_api_db", "path": API_DB_FLOOR_PATH, "auth": True},
        {
            "name": f"floor_api_db{last_page}",
            "path": API_DB_FLOOR_PATH.replace("page=1", f"page={last_page}"),
            "auth": True,
        },
        {"name": "page1_hit", "path": "/api/v1/emails?page=1", "auth": True},
        {
            "name": f"page{last_page}_hit",
            "path": f"/api/v1/emails?page={last_page}",
            "auth": True,
        },
        {"name": "page1_miss", "path": "/api/v1/emails?page=1", "auth": True, "bump": bump},
        {
            "name": f"page{last_page}_miss",
            "path": f"/api/v1/emails?page={last_page}",
            "auth": True,
            "bump": bump,
        },
        # The same emails as page last_page, by keyset (?cursor=): what a deep walk costs.
        {"name": f"cursor{last_page}_hit", "path": cursor, "auth": True},
        {"name": f"cursor{last_page}_miss", "path": cursor, "auth": True, "bump": bump},
    ]


def check_bump_key(bench) -> None:
    """The load generator invalidates the account's list pages by setting the version key
    in Redis directly; make sure that key is the one the app reads."""
    import redis

    from mailer import listcache

    account_id = bench.accounts["lister"]["user"].pk
    value = time.time_ns()
    bump = next(v["bump"] for v in variants(bench) if v["name"] == "page1_miss")
    redis.Redis.from_url(bench.redis_url).set(bump, value)
    if listcache.version(account_id) != value:
        raise RuntimeError("the list cache version key is not where the bench expects it")


def store_page(bench) -> int:
    """The page floor's body: the exact bytes GET /api/v1/emails?page=1 answers the lister from
    the cache (fetched once to fill it, then the hit, as the load generator's warm-up does),
    stored through the app's cache (django-redis, the run's settings) where
    /bench/one-redis-trip-page reads them; checked served back byte for byte. Returns the size."""
    from django.core.cache import cache

    from bench.urls import PAGE_KEY
    from harness.api import ApiClient

    api = ApiClient.http(bench.url, bench.accounts["lister"]["token"], keep_bodies=False)
    api.get(PAGE_PATH)  # a miss after check_bump_key's bump: fills the cache
    answer = api.get(PAGE_PATH)  # the cache hit the "List page=1, cache hit" row times
    if answer.status_code != 200:
        raise RuntimeError(f"GET {PAGE_PATH} answered {answer.status_code}")
    cache.set(PAGE_KEY, answer.content, timeout=None)
    served = api.with_token(None).get(PAGE_FLOOR_PATH)
    if served.status_code != 200 or served.content != answer.content:
        raise RuntimeError(f"{PAGE_FLOOR_PATH} does not serve the stored page: {served!r}")
    served = api.get(API_FLOOR_PATH)
    if served.status_code != 200 or served.content != answer.content:
        raise RuntimeError(f"{API_FLOOR_PATH} does not serve the stored page: {served!r}")
    served = api.get(API_DB_FLOOR_PATH)
    listed = [row["id"] for row in json.loads(answer.content)["results"]]
    if served.status_code != 200 or [r["id"] for r in served.json()["results"]] != listed:
        raise RuntimeError(f"{API_DB_FLOOR_PATH} does not serve page 1's emails: {served!r}")
    return len(answer.content)


def full_count_ms(bench) -> float:
    """What COUNT(*) over the listed account costs, as it ran on every uncached page."""
    from django.db import connections

    from mailer.models import Email

    started = time.perf_counter()
    Email.objects.filter(account=bench.accounts["lister"]["user"]).count()
    elapsed = (time.perf_counter() - started) * 1000
    connections.close_all()
    return round(elapsed, 1)


def _repeat(bench, job: dict, repeat: int) -> dict:
    """One round-robin pass over the variants, with each variant's ratios to the trivial view."""
    result = bench.load(job)
    base = result["variants"]["trivial"]
    ratios = {}
    for name, figures in result["variants"].items():
        if name != "trivial":
            ratios[name] = {
                "p50": figures["p50_ms"] / base["p50_ms"],
                "p99": figures["p99_ms"] / base["p99_ms"],
            }
    bench.log(
        f"   repeat {repeat + 1}: "
        + ", ".join(
            f"{n} {v['p50_ms']:.1f}/{v['p99_ms']:.1f} ms" for n, v in result["variants"].items()
        )
        + " (p50/p99)"
    )
    return {"variants": result["variants"], "failures": result["failures"], "ratios": ratios}


# A target over the trivial view moves to ours over the variant's floor (what any API answering
# it must do, measured in the same run) only when that floor is itself above the target, as
# issue 13 allows: then ours may cost at most a third more than the floor (the 0.75 of
# throughput the sends and the drain are held to over their durable floors).
OVER_FLOOR = 1.33


def floor_of(name: str, last_page: int) -> str | None:
    """The floor a list variant is measured against: a hit, the API floor serving the cached
    bytes; a numbered miss, the hand-written statement at the same page; a keyset miss, that
    statement at page 1 (a keyset page costs what page 1 costs)."""
    if name.startswith("floor"):
        return None
    if name.endswith("_hit"):
        return "floor_api_page"
    deep = name.startswith("page") and name != "page1_miss"
    return f"floor_api_db{last_page}" if deep else "floor_api_db"


def _summary(runs: list[dict], listed: list[dict], last_page: int) -> dict:
    item: dict = {"runs": runs, "variants": {}}
    for variant in listed[1:]:
        name = variant["name"]
        limit = 1.5 if name.endswith("_hit") else 3.0
        p50 = spread([r["ratios"][name]["p50"] for r in runs])
        floor = name.startswith("floor")  # a reference, not a target
        item["variants"][name] = {
            "p50_ms": spread([r["variants"][name]["p50_ms"] for r in runs]),
            "p99_ms": spread([r["variants"][name]["p99_ms"] for r in runs]),
            "ratio_p50": p50,
            "ratio_p99": spread([r["ratios"][name]["p99"] for r in runs]),
            "target": "" if floor else f"p50 <= {limit}",
            "met": None if floor else p50["median"] <= limit,
        }
        below = floor_of(name, last_page)
        if below is None or below not in runs[0]["ratios"]:
            continue
        floor_ratio = spread([r["ratios"][below]["p50"] for r in runs])
        if floor_ratio["median"] > limit:  # out of reach by design: the floor is above it
            over = spread([r["ratios"][name]["p50"] / r["ratios"][below]["p50"] for r in runs])
            item["variants"][name].update(
                target=f"moved (its floor is at {floor_ratio['median']:.2f})", met=None,
                floor=below, over_floor=over, floor_target=f"<= {OVER_FLOOR}",
                met_floor=over["median"] <= OVER_FLOOR,
            )  # fmt: skip
    item["trivial"] = {
        "p50_ms": spread([r["variants"]["trivial"]["p50_ms"] for r in runs]),
        "p99_ms": spread([r["variants"]["trivial"]["p99_ms"] for r in runs]),
    }
    return item


def _profile_missed(bench, job: dict, listed: list[dict], missed: list[str]) -> None:
    bench.log(f"   above target ({', '.join(missed)}): profiling the web workers")
    for kind, samples in (("hit", 300), ("miss", 150)):
        slow = [v for v in listed if v["name"] in missed and v["name"].endswith(kind)]
        if slow:
            job = {**job, "variants": slow, "samples": samples, "warmup": 1}
            bench.profiled(f"list-{kind}", {"web": bench.gunicorn.pid},
                           lambda job=job: bench.load(job))  # fmt: skip


def run(bench) -> None:
    s = bench.sizes
    bench.log(f"2. sent-list latency with {s.rows:,} emails vs a trivial JSON view")
    check_bump_key(bench)
    page_bytes = store_page(bench)
    bench.log(f"   page floor: the cached page=1 answer, {page_bytes:,} bytes, stored in Redis")
    listed = variants(bench)
    job = {
        "kind": "get",
        "token": bench.accounts["lister"]["token"],
        "variants": listed,
        "samples": s.list_samples,
        "warmup": 3,
        "redis_url": bench.redis_url,
    }
    runs = [_repeat(bench, job, repeat) for repeat in range(s.repeats)]
    item = _summary(runs, listed, deepest_page(bench))
    item["full_count_ms"] = full_count_ms(bench)
    item["floor_page_bytes"] = page_bytes
    bench.results["items"]["2_list_latency"] = item
    missed = [n for n, v in item["variants"].items() if False in (v["met"], v.get("met_floor"))]
    if missed:
        _profile_missed(bench, job, listed, missed)
