"""`make bench`: start the app (gunicorn, production settings, 2 workers), redis-server, an SMTP
sink and, for queue mode, 2 Celery workers, all on loopback; drive load from a separate process;
write bench/results/latest.json and a Markdown table (printed, and kept in bench/README.md).

Every figure is a ratio against a baseline measured in the same run, min/median/max over repeats.
Usage: python -m bench.run [--quick] [--soak] [--only 1,2,3,4,5] [--no-readme] [--no-profile]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import profile, report
from bench.procs import (
    Processes,
    children,
    cpu_seconds,
    free_port,
    memory_kib,
    wait_http,
    wait_port,
)
from bench.report import spread

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
CACHE = BENCH / ".cache"
PYTHON = sys.executable
CACHE_PREFIX = "bench"


@dataclass(frozen=True)
class Sizes:
    name: str
    rows: int  # emails in the listed account
    repeats: int
    smtp_seconds: float  # each raw smtplib baseline run
    send_seconds: float  # each API throughput run
    list_samples: int  # per variant and repeat
    failover_samples: int  # sends per latency run
    soak_sends: int  # item 5: stop after this many sends...
    soak_seconds: float  # ...or this long
    queue_emails: int  # item 4: emails per enqueue/drain run
    noop_tasks: int  # item 4: no-op tasks per baseline run
    max_seconds: int  # the whole run is stopped past this


FULL = Sizes("full", 1_000_000, 3, 4, 10, 200, 200, 50_000, 45, 1000, 3000, 900)
QUICK = Sizes("quick", 10_000, 2, 1, 2, 20, 20, 400, 8, 100, 200, 300)
SOAK = Sizes("soak", 10_000, 1, 1, 1, 5, 5, 50_000, 900, 100, 200, 1500)

WORKERS = 2
CONCURRENCY = 8
THRESHOLD = 3
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
RESET_SECONDS = 600.0  # long enough that no probe interrupts the open-circuit measurement

TARGETS = {
    "send_throughput": ">= 0.5",
    "list_hit_p50": "<= 1.5",
    "list_miss_p50": "<= 3",
    "failover_added_p99_ms": "<= 5 ms",
    "circuit_open": "<= threshold x timeout",
    "queue_drain": ">= 0.5",
}


class BenchTimeout(Exception):
    pass


def machine() -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "sqlite": __import__("sqlite3").sqlite_version,
        "kernel": platform.release(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def seed_key(rows: int) -> str:
    """Cached seed files are keyed by the migration state, Django's version and the seed code."""
    from bench import seed

    digest = hashlib.sha256()
    for path in sorted((ROOT / "mailer" / "migrations").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(Path(seed.__file__).read_bytes())
    digest.update(__import__("django").get_version().encode())
    return f"seed-{rows}-{digest.hexdigest()[:16]}"


class Bench:
    def __init__(self, sizes: Sizes, workdir: Path, *, do_profile: bool) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.do_profile = do_profile
        self.procs = Processes(workdir)
        self.results: dict = {"sizes": asdict(sizes), "items": {}, "profiles": {}}
        self.gunicorn: subprocess.Popen | None = None
        self.experiment_env: dict[str, str] = {}
        self.experiment_gunicorn: list[str] = []
        self.python = PYTHON
        self.results_dir = RESULTS

    # Infrastructure ---------------------------------------------------------------------------

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    def start_infrastructure(self) -> None:
        self.redis_port = free_port()
        self.procs.start(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--loglevel",
                "warning",
            ],
            env=dict(os.environ),
            cwd=self.workdir,
        )
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.sink_port, self.blackhole_port, self.stats_port = free_port(), free_port(), free_port()
        self.procs.start(
            "servers",
            [
                PYTHON,
                "-m",
                "bench.servers",
                str(self.sink_port),
                str(self.blackhole_port),
                str(self.stats_port),
            ],
            env=dict(os.environ),
            cwd=ROOT,
        )
        for port in (self.redis_port, self.sink_port, self.blackhole_port, self.stats_port):
            wait_port(port)
        from cryptography.fernet import Fernet

        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", str(self.workdir)),
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "ENV_FILE": str(self.workdir / "no.env"),
            "SECRET_KEY": "bench-" + Fernet.generate_key().decode(),
            "ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "SQLITE_PATH": str(self.workdir / "bench.sqlite3"),
            "STATIC_ROOT": str(self.workdir / "static"),
            "REDIS_URL": self.redis_url,
            "CACHE_KEY_PREFIX": CACHE_PREFIX,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "ALLOW_PRIVATE_PROVIDER_HOSTS": "true",  # every provider here is on loopback
            "SECURE_SSL_REDIRECT": "false",  # plain HTTP on loopback, no TLS proxy in front
            "PROVIDER_TIMEOUT": str(READ_TIMEOUT),
            "PROVIDER_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
            "BREAKER_THRESHOLD": str(THRESHOLD),
            "BREAKER_RESET_SECONDS": str(RESET_SECONDS),
            "API_RATE_LIMIT": "1000000000/minute",  # still counted in Redis on every request
            "MAIL_PROVIDER_URLS": f"smtp://127.0.0.1:{self.sink_port}",
            "DELIVERY_MODE": "sync",
            **self.experiment_env,
        }
        (self.workdir / "static").mkdir()

    def sink(self, *, reset: bool = False) -> dict:
        path = "/reset" if reset else "/"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def prepare_database(self) -> None:
        """The seeded database from bench/.cache (built when the migrations changed), copied."""
        key = seed_key(self.sizes.rows)
        cached = CACHE / f"{key}.sqlite3"
        info_path = CACHE / f"{key}.json"
        if not cached.exists() or not info_path.exists():
            CACHE.mkdir(exist_ok=True)
            for old in CACHE.glob(f"seed-{self.sizes.rows}-*"):
                old.unlink()
            building = CACHE / f"{key}.building.sqlite3"
            for stale in CACHE.glob(f"{key}.building.sqlite3*"):
                stale.unlink()
            self.log(f"seeding {self.sizes.rows:,} emails (cached afterwards as {cached.name})")
            started = time.monotonic()
            result = subprocess.run(
                [PYTHON, "-m", "bench.seed", str(self.sizes.rows)],
                cwd=ROOT,
                env={**self.env, "SQLITE_PATH": str(building)},
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0:
                raise RuntimeError(f"seeding failed:\n{result.stdout}\n{result.stderr}")
            info = json.loads(result.stdout.strip().splitlines()[-1])
            info["total_seconds"] = round(time.monotonic() - started, 2)  # migrate included
            building.rename(cached)
            info_path.write_text(json.dumps(info))
            info["cached"] = False
        else:
            info = {**json.loads(info_path.read_text()), "cached": True}
        started = time.monotonic()
        shutil.copyfile(cached, self.env["SQLITE_PATH"])
        info["copy_seconds"] = round(time.monotonic() - started, 2)
        info["key"] = key
        self.results["seed"] = info
        self.log(
            f"database: {info['rows']:,} emails, inserted in {info['seconds']} s "
            f"({'from cache' if info['cached'] else 'seeded now'})"
        )

    def setup_django(self) -> None:
        os.environ.update(self.env)
        import django

        django.setup()

    def setup_accounts(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db import connections

        from mailer.services import provider_config_create, token_create

        users = get_user_model().objects

        def smtp(account, name: str, port: int, priority: int):
            return provider_config_create(
                account=account,
                kind="smtp",
                name=name,
                priority=priority,
                settings={"host": "127.0.0.1", "port": port, "security": "none"},
            )

        self.accounts: dict[str, dict] = {}
        lister = users.get(username="lister")
        self.accounts["lister"] = {"user": lister, "token": token_create(account=lister)[1]}
        for name in ("sender", "healthy", "failover", "queue"):
            user = users.create_user(name, email=f"{name}@example.com")
            self.accounts[name] = {"user": user, "token": token_create(account=user)[1]}
        smtp(self.accounts["sender"]["user"], "sink", self.sink_port, 10)
        smtp(self.accounts["queue"]["user"], "sink", self.sink_port, 10)
        smtp(self.accounts["healthy"]["user"], "sink", self.sink_port, 10)
        smtp(self.accounts["healthy"]["user"], "sink-2", self.sink_port, 20)
        self.blackhole = smtp(self.accounts["failover"]["user"], "hole", self.blackhole_port, 10)
        smtp(self.accounts["failover"]["user"], "sink", self.sink_port, 20)
        connections.close_all()

    def start_gunicorn(self, **extra_env: str) -> None:
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.gunicorn = self.procs.start(
            "gunicorn",
            [
                PYTHON,
                "-m",
                "gunicorn",
                "emailservice.wsgi",
                "--bind",
                f"127.0.0.1:{self.http_port}",
                "--workers",
                str(WORKERS),
                "--timeout",
                "60",
                "--graceful-timeout",
                "5",
                *self.experiment_gunicorn,
            ],
            env={**self.env, **extra_env},
            cwd=ROOT,
        )
        wait_http(self.url + "/healthz", process=self.gunicorn)
        self.workers = children(self.gunicorn.pid)

    def stop_gunicorn(self) -> None:
        if self.gunicorn is not None:
            self.procs.stop(self.gunicorn)
            self.gunicorn = None

    def cpu_roles(self) -> dict[str, list[int]]:
        servers = next(p for p in self.procs.started if "bench.servers" in " ".join(p.args))
        redis = next(p for p in self.procs.started if p.args[0] == "redis-server")
        roles = {"sink": [servers.pid], "redis": [redis.pid]}
        if self.gunicorn is not None:
            roles["web_workers"] = list(self.workers)
        return roles

    def load_with_cpu(self, job: dict) -> dict:
        """load(), plus the CPU each role used meanwhile, in cores (1.0 = one core busy)."""
        roles = self.cpu_roles()
        before = {r: sum(cpu_seconds(p) for p in pids) for r, pids in roles.items()}
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        children_before = usage.ru_utime + usage.ru_stime
        started = time.monotonic()
        result = self.load(job)
        elapsed = time.monotonic() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cores = {
            r: (sum(cpu_seconds(p) for p in pids) - before[r]) / elapsed
            for r, pids in roles.items()
        }
        cores["load_generator"] = (usage.ru_utime + usage.ru_stime - children_before) / elapsed
        result["cpu_cores"] = {r: round(v, 2) for r, v in cores.items()}
        return result

    def load(self, job: dict, *, timeout: float = 900) -> dict:
        """Run one job in the load generator process and return its result."""
        job.setdefault("url", self.url)
        result = subprocess.run(
            [PYTHON, "-m", "bench.load", json.dumps(job)],
            cwd=ROOT,
            env={**self.env, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"load job {job['kind']} failed:\n{result.stderr}")
        return json.loads(result.stdout)

    def warm_up(self, token: str) -> None:
        self.load({"kind": "post", "token": token, "concurrency": CONCURRENCY, "count": 40})

    def profiled(self, name: str, pids: dict[str, int], run) -> dict:
        """Run `run()` while py-spy records each pid (and its children); keep the summaries
        as profiles[name] (or name-key for more than one)."""
        if not self.do_profile:
            return run()
        recorders = {
            key: (profile.start(pid, RESULTS / f"profile-{name}-{key}.txt", seconds=None))
            for key, pid in pids.items()
        }
        time.sleep(0.5)  # py-spy attaches
        try:
            result = run()
        finally:
            for recorder in recorders.values():
                profile.stop(recorder)
        for key in pids:
            label = name if len(pids) == 1 else f"{name}-{key}"
            summary = profile.summarize(RESULTS / f"profile-{name}-{key}.txt")
            self.results["profiles"][label] = summary
        return result

    # Items ------------------------------------------------------------------------------------

    def item_send_throughput(self) -> None:
        s = self.sizes
        token = self.accounts["sender"]["token"]
        self.log("1. sync send throughput vs a raw smtplib loop")
        self.warm_up(token)
        self.load({"kind": "smtp", "port": self.sink_port, "seconds": 0.5})
        runs = []
        for repeat in range(s.repeats):
            raw = self.load_with_cpu(
                {"kind": "smtp", "port": self.sink_port, "seconds": s.smtp_seconds}
            )
            before = self.sink()["count"]
            app = self.load_with_cpu(
                {
                    "kind": "post",
                    "token": token,
                    "concurrency": CONCURRENCY,
                    "seconds": s.send_seconds,
                }
            )
            arrived = self.sink()["count"] - before
            runs.append(
                {
                    "raw": raw,
                    "app": app,
                    "arrived_at_sink": arrived,
                    "ratio": app["rate"] / raw["rate"],
                }
            )
            self.log(
                f"   repeat {repeat + 1}: app {app['rate']:.0f}/s ({app['statuses']}), "
                f"raw smtplib {raw['rate']:.0f}/s, ratio {runs[-1]['ratio']:.2f}; "
                f"cores used: app run {app['cpu_cores']}, raw run {raw['cpu_cores']}"
            )
        peak = {str(pid): memory_kib(pid).get("VmHWM", 0) for pid in self.workers}
        ratio = spread([r["ratio"] for r in runs])
        self.results["items"]["1_send_throughput"] = {
            "runs": runs,
            "app_rate": spread([r["app"]["rate"] for r in runs]),
            "raw_rate": spread([r["raw"]["rate"] for r in runs]),
            "ratio": ratio,
            "peak_rss_kib_per_worker": peak,
            "target": TARGETS["send_throughput"],
            "met": ratio["median"] >= 0.5,
        }
        if not self.results["items"]["1_send_throughput"]["met"]:
            self.log("   below target: profiling the web workers and the sink under the same load")
            servers = next(p for p in self.procs.started if "bench.servers" in " ".join(p.args))
            job = {"kind": "post", "token": token, "concurrency": CONCURRENCY,
                   "seconds": min(8, s.send_seconds)}  # fmt: skip
            self.profiled(
                "send", {"web": self.gunicorn.pid, "sink": servers.pid}, lambda: self.load(job)
            )

    def list_variants(self) -> list[dict]:
        account_id = self.accounts["lister"]["user"].pk
        bump = f"{CACHE_PREFIX}:1:emails:version:{account_id}"
        last_page = max(1, min(5000, self.sizes.rows // 10))
        return [
            {"name": "trivial", "path": "/bench/trivial"},
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
        ]

    def check_bump_key(self) -> None:
        """The load generator invalidates the account's list pages by setting the version key
        in Redis directly; make sure that key is the one the app reads."""
        import redis

        from mailer import listcache

        account_id = self.accounts["lister"]["user"].pk
        value = time.time_ns()
        redis.Redis.from_url(self.redis_url).set(self.list_variants()[3]["bump"], value)
        if listcache.version(account_id) != value:
            raise RuntimeError("the list cache version key is not where the bench expects it")

    def item_list_latency(self) -> None:
        s = self.sizes
        self.log(f"2. sent-list latency with {s.rows:,} emails vs a trivial JSON view")
        self.check_bump_key()
        variants = self.list_variants()
        job = {
            "kind": "get",
            "token": self.accounts["lister"]["token"],
            "variants": variants,
            "samples": s.list_samples,
            "warmup": 3,
            "redis_url": self.redis_url,
        }
        runs = []
        for repeat in range(s.repeats):
            result = self.load(job)
            base = result["variants"]["trivial"]
            ratios = {}
            for name, figures in result["variants"].items():
                if name != "trivial":
                    ratios[name] = {
                        "p50": figures["p50_ms"] / base["p50_ms"],
                        "p99": figures["p99_ms"] / base["p99_ms"],
                    }
            runs.append(
                {"variants": result["variants"], "failures": result["failures"], "ratios": ratios}
            )
            self.log(
                f"   repeat {repeat + 1}: "
                + ", ".join(
                    f"{n} {v['p50_ms']:.1f}/{v['p99_ms']:.1f} ms"
                    for n, v in result["variants"].items()
                )
                + " (p50/p99)"
            )
        item: dict = {"runs": runs, "variants": {}}
        for variant in variants[1:]:
            name = variant["name"]
            limit = 1.5 if name.endswith("_hit") else 3.0
            p50 = spread([r["ratios"][name]["p50"] for r in runs])
            item["variants"][name] = {
                "p50_ms": spread([r["variants"][name]["p50_ms"] for r in runs]),
                "p99_ms": spread([r["variants"][name]["p99_ms"] for r in runs]),
                "ratio_p50": p50,
                "ratio_p99": spread([r["ratios"][name]["p99"] for r in runs]),
                "target": f"p50 <= {limit}",
                "met": p50["median"] <= limit,
            }
        item["trivial"] = {
            "p50_ms": spread([r["variants"]["trivial"]["p50_ms"] for r in runs]),
            "p99_ms": spread([r["variants"]["trivial"]["p99_ms"] for r in runs]),
        }
        item["full_count_ms"] = self.full_count_ms()
        self.results["items"]["2_list_latency"] = item
        missed = [n for n, v in item["variants"].items() if not v["met"]]
        if missed:
            self.log(f"   above target ({', '.join(missed)}): profiling the web workers")
            for kind, samples in (("hit", 300), ("miss", 150)):
                slow = [v for v in variants if v["name"] in missed and v["name"].endswith(kind)]
                if slow:
                    job = {**job, "variants": slow, "samples": samples, "warmup": 1}
                    self.profiled(f"list-{kind}", {"web": self.gunicorn.pid},
                                  lambda job=job: self.load(job))  # fmt: skip

    def full_count_ms(self) -> float:
        """What COUNT(*) over the listed account costs, as it ran on every uncached page."""
        from django.db import connections

        from mailer.models import Email

        started = time.perf_counter()
        Email.objects.filter(account=self.accounts["lister"]["user"]).count()
        elapsed = (time.perf_counter() - started) * 1000
        connections.close_all()
        return round(elapsed, 1)

    def circuit_opening(self, concurrency: int) -> dict:
        """Reset the blackholed provider's circuit, send until a response shows it skipped, then
        read from the stored attempts when the threshold-th failure ended (= it opened)."""
        from django.db import connections

        from mailer.models import DeliveryAttempt
        from mailer.services import breaker

        breaker().reset(self.blackhole.breaker_key)
        since = datetime.now(UTC)
        result = self.load(
            {
                "kind": "post",
                "token": self.accounts["failover"]["token"],
                "concurrency": concurrency,
                "seconds": 60,
                "stop_on_skipped": True,
            }
        )
        attempts = list(
            DeliveryAttempt.objects.filter(provider=self.blackhole, started_at__gte=since)
            .order_by("started_at")
            .values("outcome", "error_code", "started_at", "duration_ms")
        )
        connections.close_all()
        failures = [a for a in attempts if a["outcome"] in ("provider_error", "ambiguous")]
        skips = [a for a in attempts if a["outcome"] == "skipped"]
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
            "sends": result["statuses"],
        }

    def item_failover(self) -> None:
        s = self.sizes
        self.log("3. failover: first provider blackholed, circuit open vs a healthy first provider")
        self.warm_up(self.accounts["healthy"]["token"])
        opening = [self.circuit_opening(1), self.circuit_opening(CONCURRENCY)]
        for o in opening:
            self.log(
                f"   {o['concurrency']} client(s): circuit opened {o['seconds_to_open']:.2f} s "
                f"after the first failure, {o['seconds_waiting_before_open']:.2f} s of it "
                f"waiting on the provider ({o['failures']} failures; bound "
                f"{o['bound_seconds']:.1f} s)"
            )
        runs = []
        for repeat in range(s.repeats):
            tokens = {name: self.accounts[name]["token"] for name in ("healthy", "failover")}
            figures = self.load({"kind": "alternate", "tokens": tokens,
                                 "count": s.failover_samples})  # fmt: skip
            healthy, open_ = figures["healthy"], figures["failover"]
            runs.append(
                {
                    "healthy": healthy,
                    "open": open_,
                    "ratio_p50": open_["p50_ms"] / healthy["p50_ms"],
                    "ratio_p99": open_["p99_ms"] / healthy["p99_ms"],
                    "added_p50_ms": open_["p50_ms"] - healthy["p50_ms"],
                    "added_p99_ms": open_["p99_ms"] - healthy["p99_ms"],
                }
            )
            self.log(
                f"   repeat {repeat + 1}: open circuit {open_['p50_ms']:.1f}/"
                f"{open_['p99_ms']:.1f} ms, healthy {healthy['p50_ms']:.1f}/"
                f"{healthy['p99_ms']:.1f} ms (p50/p99)"
            )
        added = spread([r["added_p99_ms"] for r in runs])
        self.results["items"]["3_failover"] = {
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

    def item_memory(self) -> None:
        s = self.sizes
        self.log(
            f"5. memory: RSS of the web workers over up to {s.soak_sends:,} sends "
            f"(at most {s.soak_seconds:.0f} s)"
        )
        token = self.accounts["sender"]["token"]
        samples: list[dict] = []
        stop = threading.Event()
        base = self.sink()["count"]

        def sample() -> None:
            while not stop.is_set():
                samples.append(
                    {
                        "t": time.monotonic(),
                        "sends": self.sink()["count"] - base,
                        "rss_kib": {str(p): memory_kib(p).get("VmRSS", 0) for p in self.workers},
                    }
                )
                stop.wait(1.0)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            result = self.load(
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
        self.results["items"]["5_memory"] = {
            "sends": result["ok"],
            "seconds": result["seconds"],
            "rate": result["rate"],
            "statuses": result["statuses"],
            "processes": memory_trend(samples, self.workers),
            "samples": samples,
            "capped_by_time": result["ok"] < s.soak_sends,
        }

    def item_queue(self) -> None:
        from bench import queue_mode

        queue_mode.run(self)

    # Run --------------------------------------------------------------------------------------

    def run(self, only: set[str]) -> dict:
        self.results["machine"] = machine()
        self.results["load_average_start"] = load_average()
        self.results["started"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.start_infrastructure()
        self.prepare_database()
        self.setup_django()
        self.setup_accounts()
        self.start_gunicorn()
        self.log(f"gunicorn on {self.url}, workers {self.workers}")
        steps = [
            ("1", self.item_send_throughput),
            ("2", self.item_list_latency),
            ("3", self.item_failover),
            ("5", self.item_memory),
        ]
        for key, step in steps:
            if key in only:
                self.guard(key, step)
        self.stop_gunicorn()
        if "4" in only:
            self.guard("4", self.item_queue)
        self.results["load_average_end"] = load_average()
        self.results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        return self.results

    def guard(self, key: str, step) -> None:
        """One item failing is reported in the results; the others still run."""
        try:
            step()
        except BenchTimeout:
            raise
        except Exception as exc:
            self.log(f"item {key} failed: {exc}")
            self.results.setdefault("errors", {})[key] = traceback.format_exc()


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for development")
    parser.add_argument("--soak", action="store_true", help="item 5 only, 50,000 sends")
    parser.add_argument("--only", default="1,2,3,4,5", help="items to run, e.g. 1,3")
    parser.add_argument("--no-readme", action="store_true", help="leave bench/README.md as is")
    parser.add_argument("--no-profile", action="store_true", help="no py-spy on missed targets")
    parser.add_argument("--rows", type=int, help="override the listed account's size")
    parser.add_argument("--repeats", type=int, help="override the number of repeats")
    parser.add_argument(
        "--experiment",
        choices=["conn-max-age", "threads"],
        help="measure a change that is not in the app (results are not written to the README)",
    )
    args = parser.parse_args(argv)
    sizes = SOAK if args.soak else QUICK if args.quick else FULL
    overrides = {k: v for k, v in (("rows", args.rows), ("repeats", args.repeats)) if v}
    if args.experiment:
        overrides["name"] = f"{sizes.name}-{args.experiment}"
    sizes = replace(sizes, **overrides)
    only = {"5"} if args.soak else set(args.only.split(","))
    RESULTS.mkdir(exist_ok=True)

    def too_long(signum, frame):
        raise BenchTimeout(f"the bench ran past {sizes.max_seconds} s and was stopped")

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, too_long)
    signal.signal(signal.SIGTERM, interrupted)
    signal.alarm(sizes.max_seconds)
    workdir = Path(tempfile.mkdtemp(prefix="emailservice-bench-"))
    bench = Bench(sizes, workdir, do_profile=not args.no_profile)
    if args.experiment == "conn-max-age":
        bench.experiment_env = {"BENCH_CONN_MAX_AGE": "600"}
    elif args.experiment == "threads":  # the same 2 workers, 4 threads each (gthread)
        bench.experiment_gunicorn = ["--threads", "4"]
    ok = False
    try:
        results = bench.run(only)
        ok = "errors" not in results
    finally:
        signal.alarm(0)
        bench.procs.stop_all()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"[bench] logs kept in {workdir}", file=sys.stderr)
    name = {"full": "latest"}.get(sizes.name, sizes.name)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2, default=str))
    table = report.markdown(results)
    print()
    print(table)
    if sizes.name in ("full", "soak") and not overrides and not args.no_readme:
        report.update_readme(BENCH / "README.md", results, table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
