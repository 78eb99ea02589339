"""Item 1: sync send throughput (POSTs answering 201) against a raw smtplib loop to the sink."""

from __future__ import annotations

from bench.context import CONCURRENCY
from bench.report import spread
from harness.procs import memory_kib


def _repeat(bench, token: str) -> dict:
    """One raw smtplib run, then one API run; the sink's count is read around the latter."""
    s = bench.sizes
    raw = bench.load_with_cpu({"kind": "smtp", "port": bench.sink_port, "seconds": s.smtp_seconds})
    before = bench.sink()["count"]
    app = bench.load_with_cpu(
        {
            "kind": "post",
            "token": token,
            "concurrency": CONCURRENCY,
            "seconds": s.send_seconds,
        }
    )
    arrived = bench.sink()["count"] - before
    return {
        "raw": raw,
        "app": app,
        "arrived_at_sink": arrived,
        "ratio": app["rate"] / raw["rate"],
    }


def run(bench) -> None:
    s = bench.sizes
    token = bench.accounts["sender"]["token"]
    bench.log("1. sync send throughput vs a raw smtplib loop")
    bench.warm_up(token)
    bench.load({"kind": "smtp", "port": bench.sink_port, "seconds": 0.5})
    runs = []
    for repeat in range(s.repeats):
        runs.append(_repeat(bench, token))
        app, raw = runs[-1]["app"], runs[-1]["raw"]
        bench.log(
            f"   repeat {repeat + 1}: app {app['rate']:.0f}/s ({app['statuses']}), "
            f"raw smtplib {raw['rate']:.0f}/s, ratio {runs[-1]['ratio']:.2f}; "
            f"cores used: app run {app['cpu_cores']}, raw run {raw['cpu_cores']}"
        )
    peak = {str(pid): memory_kib(pid).get("VmHWM", 0) for pid in bench.workers}
    ratio = spread([r["ratio"] for r in runs])
    bench.results["items"]["1_send_throughput"] = {
        "runs": runs,
        "app_rate": spread([r["app"]["rate"] for r in runs]),
        "raw_rate": spread([r["raw"]["rate"] for r in runs]),
        "ratio": ratio,
        "peak_rss_kib_per_worker": peak,
        "target": bench.targets["send_throughput"],
        "met": ratio["median"] >= 0.5,
    }
    if not bench.results["items"]["1_send_throughput"]["met"]:
        bench.log("   below target: profiling the web workers and the sink under the same load")
        job = {"kind": "post", "token": token, "concurrency": CONCURRENCY,
               "seconds": min(8, s.send_seconds)}  # fmt: skip
        pids = {"web": bench.gunicorn.pid, "sink": bench.sink_process.pid}
        bench.profiled("send", pids, lambda: bench.load(job))
