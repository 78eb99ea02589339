"""Item 1: sync send throughput (POSTs answering 201) against a raw smtplib loop to the sink,
and against the peer: a bare Django view calling `send_mail` (bench/peer_views.py) on the same
gunicorn, driven by the same load (8 clients, the same duration, the same JSON body). The
durable floor (bench/floor_views.py: store the email, send it on a kept connection, store the
attempt and the outcome) runs under the same load too, as a reference without a target."""

from __future__ import annotations

from bench.context import CONCURRENCY
from bench.report import at_least, spread
from harness.procs import memory_kib

PEER_PATH = "/bench/peer/send_mail"
FLOOR_PATH = "/bench/floor/send"


def _peer_job(seconds: float) -> dict:
    return {"kind": "post", "path": PEER_PATH, "expect": 200, "concurrency": CONCURRENCY,
            "seconds": seconds}  # fmt: skip


def _floor_job(seconds: float) -> dict:
    return {"kind": "post", "path": FLOOR_PATH, "expect": 201, "concurrency": CONCURRENCY,
            "seconds": seconds}  # fmt: skip


def _app_job(token: str, seconds: float) -> dict:
    return {"kind": "post", "token": token, "concurrency": CONCURRENCY, "seconds": seconds}


def _counted(bench, job: dict) -> tuple[dict, int]:
    """One load run with the CPU it used, and how many emails the sink counted meanwhile."""
    before = bench.sink()["count"]
    result = bench.load_with_cpu(job)
    return result, bench.sink()["count"] - before


def _repeat(bench, token: str) -> dict:
    """One raw smtplib run, one peer run, one durable floor run, then one API run; the sink's
    count is read around the latter three."""
    s = bench.sizes
    raw = bench.load_with_cpu({"kind": "smtp", "port": bench.sink_port, "seconds": s.smtp_seconds})
    peer, peer_arrived = _counted(bench, _peer_job(s.send_seconds))
    floor, floor_arrived = _counted(bench, _floor_job(s.send_seconds))
    app, arrived = _counted(bench, _app_job(token, s.send_seconds))
    return {
        "raw": raw,
        "peer": peer,
        "floor": floor,
        "app": app,
        "arrived_at_sink": arrived,
        "peer_arrived_at_sink": peer_arrived,
        "floor_arrived_at_sink": floor_arrived,
        "ratio": app["rate"] / raw["rate"],
        "peer_ratio": _over(app, peer),
        "floor_ratio": _over(app, floor),
        "floor_over_raw": _over(floor, raw),
        "floor_over_peer": _over(floor, peer),
    }


def _over(a: dict, b: dict) -> float | None:
    return a["rate"] / b["rate"] if b["rate"] else None


def _check(bench, runs: list[dict]) -> None:
    """The sink counted one email per answer 201 (ours, the floor's) or 200 (the peer's); a
    mismatch is a check failure (the run fails; the figures are still written)."""
    problems = []
    for n, r in enumerate(runs, 1):
        pairs = {"ours": (r["app"]["ok"], r["arrived_at_sink"]),
                 "peer": (r["peer"]["ok"], r["peer_arrived_at_sink"]),
                 "durable floor": (r["floor"]["ok"], r["floor_arrived_at_sink"])}  # fmt: skip
        for who, (answered, arrived) in pairs.items():
            if answered != arrived:
                problems.append(f"repeat {n}, {who}: {answered} answered, {arrived} at the sink")
    if problems:
        bench.results.setdefault("check_failures", {})["1"] = "; ".join(problems)
        bench.log(f"   CHECK FAILED: {bench.results['check_failures']['1']}")


def _summary(bench, runs: list[dict]) -> dict:
    ratio = spread([r["ratio"] for r in runs])
    peer_ratio = spread([r["peer_ratio"] for r in runs])
    return {
        "runs": runs,
        "app_rate": spread([r["app"]["rate"] for r in runs]),
        "raw_rate": spread([r["raw"]["rate"] for r in runs]),
        "peer_rate": spread([r["peer"]["rate"] for r in runs]),
        "floor_rate": spread([r["floor"]["rate"] for r in runs]),
        "ratio": ratio,
        "peer_ratio": peer_ratio,
        **{
            key: spread([r[key] for r in runs])
            for key in ("floor_ratio", "floor_over_raw", "floor_over_peer")
        },
        "peak_rss_kib_per_worker": {
            str(pid): memory_kib(pid).get("VmHWM", 0) for pid in bench.workers
        },
        "target": bench.targets["send_throughput"],
        "met": ratio["median"] >= 0.5,
        "peer_target": bench.targets["send_throughput_peer"],
        "met_peer": None,  # moved: the durable floor is below the peer
        "floor_target": bench.targets["send_over_floor"],
        "met_floor": at_least(runs, "floor_ratio", bench.targets["send_over_floor"]),
    }


def _log(bench, repeat: int, r: dict) -> None:
    bench.log(
        f"   repeat {repeat + 1}: app {r['app']['rate']:.0f}/s ({r['app']['statuses']}), "
        f"peer {r['peer']['rate']:.0f}/s ({r['peer']['statuses']}), durable floor "
        f"{r['floor']['rate']:.0f}/s ({r['floor']['statuses']}), raw smtplib "
        f"{r['raw']['rate']:.0f}/s; ratio to raw {r['ratio']:.2f}, to the peer "
        f"{r['peer_ratio'] or 0:.2f}, to the floor {r['floor_ratio'] or 0:.2f}; cores used: "
        f"app run {r['app']['cpu_cores']}, peer run {r['peer']['cpu_cores']}, floor run "
        f"{r['floor']['cpu_cores']}, raw run {r['raw']['cpu_cores']}"
    )


def run(bench) -> None:
    s = bench.sizes
    token = bench.accounts["sender"]["token"]
    bench.log("1. sync send throughput vs a raw smtplib loop, a bare send_mail view and the "
              "durable floor")  # fmt: skip
    bench.warm_up(token)
    bench.load({**_peer_job(60), "count": 40})  # the peer view's first requests
    bench.load({**_floor_job(60), "count": 40})  # the floor's: its kept connections open
    bench.load({"kind": "smtp", "port": bench.sink_port, "seconds": 0.5})
    runs = []
    for repeat in range(s.repeats):
        runs.append(_repeat(bench, token))
        _log(bench, repeat, runs[-1])
    item = bench.results["items"]["1_send_throughput"] = _summary(bench, runs)
    _check(bench, runs)
    if not (item["met"] and item["met_floor"]):
        bench.log("   below target: profiling the web workers and the sink under the same load")
        job = _app_job(token, min(8, s.send_seconds))
        pids = {"web": bench.gunicorn.pid, "sink": bench.sink_process.pid}
        bench.profiled("send", pids, lambda: bench.load(job))
