"""Item 5: RSS of the web workers against the sends counted at the sink, and whether it is flat."""

from __future__ import annotations

import statistics
import threading
import time

from bench.context import CONCURRENCY
from harness.procs import memory_kib


def memory_trend(samples: list[dict], pids: list[int]) -> dict:
    """Per process: RSS after the first 20% of sends (warm-up) and at the end, and the
    least-squares slope over the rest in KiB per 1,000 sends."""
    out = {}
    if not samples:
        return out
    total = samples[-1]["sends"]
    for pid in map(str, pids):
        points = [
            (x["sends"], x["rss_kib"].get(pid, 0))
            for x in samples
            if x["sends"] >= 0.2 * total and x["rss_kib"].get(pid)
        ]
        if len(points) < 3:
            continue
        xs, ys = zip(*points, strict=True)
        slope = statistics.linear_regression(xs, ys).slope if len(set(xs)) > 1 else 0.0
        projected = slope * 50_000
        out[pid] = {
            "rss_start_kib": ys[0],
            "rss_end_kib": ys[-1],
            "rss_min_kib": min(ys),
            "rss_max_kib": max(ys),
            "slope_kib_per_1k_sends": round(slope * 1000, 2),
            "projected_growth_kib_per_50k_sends": round(projected),
            "flat": projected <= 0.05 * ys[0],
        }
    return out


def _sampler(bench, samples: list[dict], stop: threading.Event) -> threading.Thread:
    """A thread appending, every second until stop is set, the sends so far and each RSS."""
    base = bench.sink()["count"]

    def sample() -> None:
        while not stop.is_set():
            samples.append(
                {
                    "t": time.monotonic(),
                    "sends": bench.sink()["count"] - base,
                    "rss_kib": {str(p): memory_kib(p).get("VmRSS", 0) for p in bench.workers},
                }
            )
            stop.wait(1.0)

    return threading.Thread(target=sample)


def run(bench) -> None:
    s = bench.sizes
    bench.log(
        f"5. memory: RSS of the web workers over up to {s.soak_sends:,} sends "
        f"(at most {s.soak_seconds:.0f} s)"
    )
    token = bench.accounts["sender"]["token"]
    samples: list[dict] = []
    stop = threading.Event()
    sampler = _sampler(bench, samples, stop)
    sampler.start()
    try:
        result = bench.load(
            {
                "kind": "post",
                "token": token,
                "concurrency": CONCURRENCY,
                "count": s.soak_sends,
                "seconds": s.soak_seconds,
            },
            timeout=s.soak_seconds + 120,
        )
    finally:
        stop.set()
        sampler.join()
    bench.results["items"]["5_memory"] = {
        "sends": result["ok"],
        "seconds": result["seconds"],
        "rate": result["rate"],
        "statuses": result["statuses"],
        "processes": memory_trend(samples, bench.workers),
        "samples": samples,
        "capped_by_time": result["ok"] < s.soak_sends,
    }
