"""The running bench: redis, the SMTP sink and blackhole, gunicorn, and the load generator."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path

from bench import profile
from harness import procs
from harness.app import loopback_env, start_gunicorn
from harness.ports import free_port, wait_port
from harness.procs import Processes, children, cpu_seconds
from harness.redis import RedisServer

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
PYTHON = sys.executable
CACHE_PREFIX = "bench"

WORKERS = 2
CONCURRENCY = 8
THRESHOLD = 3
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 2.0
RESET_SECONDS = 600.0  # long enough that no probe interrupts the open-circuit measurement


class Bench:
    """What every item works with: the sizes, the servers, the accounts, the load generator and
    the results being collected. The orchestrator (bench/run.py) builds it and passes it in."""

    def __init__(self, sizes, workdir: Path, *, do_profile: bool, targets: dict) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.do_profile = do_profile
        self.targets = targets
        self.procs = Processes()
        self.results: dict = {"sizes": asdict(sizes), "items": {}, "profiles": {}}
        self.gunicorn: subprocess.Popen | None = None
        self.experiment_env: dict[str, str] = {}
        self.experiment_gunicorn: list[str] = []
        self.python = PYTHON
        self.results_dir = RESULTS

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    # Infrastructure ---------------------------------------------------------------------------

    def start_infrastructure(self) -> None:
        """redis-server, and the tests' SMTP sink (counting, in a process of its own) with a
        blackhole and the sink's count over HTTP."""
        self.redis = RedisServer(self.workdir / "redis").start()
        self.procs.add(self.redis.process)
        self.redis_url = self.redis.url
        self.sink_port, self.blackhole_port, self.stats_port = free_port(), free_port(), free_port()
        self.sink_process = self.procs.add(
            procs.start(
                [PYTHON, "-m", "harness.smtp", "--port", str(self.sink_port), "--blackhole-port",
                 str(self.blackhole_port), "--stats-port", str(self.stats_port)],
                env=dict(os.environ),
                log=self.workdir / "sink.log",
            )
        )  # fmt: skip
        for port in (self.sink_port, self.blackhole_port, self.stats_port):
            wait_port(port, process=self.sink_process)
        self.env = self.app_env()
        (self.workdir / "static").mkdir()

    def app_env(self) -> dict[str, str]:
        """The app's environment: the tests' (harness.app.loopback_env: production settings,
        changed only where loopback needs it) with the bench's settings module and timeouts."""
        from cryptography.fernet import Fernet

        return loopback_env(
            self.workdir,
            redis_url=self.redis_url,
            encryption_keys=Fernet.generate_key().decode(),
            secret_key="bench-" + Fernet.generate_key().decode(),
            PYTHONPATH=str(ROOT),
            DJANGO_SETTINGS_MODULE="bench.settings",
            SQLITE_PATH=str(self.workdir / "bench.sqlite3"),
            CACHE_KEY_PREFIX=CACHE_PREFIX,
            PROVIDER_TIMEOUT=str(READ_TIMEOUT),
            PROVIDER_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
            BREAKER_THRESHOLD=str(THRESHOLD),
            BREAKER_RESET_SECONDS=str(RESET_SECONDS),
            MAIL_PROVIDER_URLS=f"smtp://127.0.0.1:{self.sink_port}?security=none",
            DELIVERY_MODE="sync",
            BENCH_PEER_SMTP_PORT=str(self.sink_port),  # item 1's peer (bench/settings.py)
            **self.experiment_env,
        )

    def sink(self, *, reset: bool = False) -> dict:
        path = "/reset" if reset else "/"
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}{path}", timeout=5) as r:
            return json.loads(r.read())

    def setup_django(self) -> None:
        os.environ.update(self.env)
        import django

        django.setup()

    def setup_accounts(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db import connections

        from harness.factories import make_account, make_smtp_provider, make_token

        def smtp(account, name: str, port: int, priority: int):
            return make_smtp_provider(account, port, name=name, priority=priority)

        self.accounts: dict[str, dict] = {}
        lister = get_user_model().objects.get(username="lister")
        self.accounts["lister"] = {"user": lister, "token": make_token(lister)}
        for name in ("sender", "healthy", "failover", "queue", "floor"):
            user = make_account(name)
            self.accounts[name] = {"user": user, "token": make_token(user)}
        smtp(self.accounts["sender"]["user"], "sink", self.sink_port, 10)
        smtp(self.accounts["queue"]["user"], "sink", self.sink_port, 10)
        # Items 1 and 4's durable floor (bench/floor.py): its own account, so the others' rows
        # are unchanged; its view and workers find it by this variable.
        smtp(self.accounts["floor"]["user"], "sink", self.sink_port, 10)
        self.env["BENCH_FLOOR_ACCOUNT_ID"] = str(self.accounts["floor"]["user"].pk)
        smtp(self.accounts["healthy"]["user"], "sink", self.sink_port, 10)
        smtp(self.accounts["healthy"]["user"], "sink-2", self.sink_port, 20)
        self.blackhole = smtp(self.accounts["failover"]["user"], "hole", self.blackhole_port, 10)
        smtp(self.accounts["failover"]["user"], "sink", self.sink_port, 20)
        connections.close_all()

    def start_gunicorn(self, **extra_env: str) -> None:
        """gunicorn as the tests start it (harness.app.start_gunicorn), with WORKERS workers."""
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.gunicorn = self.procs.add(
            start_gunicorn(
                {**self.env, **extra_env},
                port=self.http_port,
                workers=WORKERS,
                log=self.workdir / "gunicorn.log",
                options=tuple(self.experiment_gunicorn),
            )
        )
        self.workers = children(self.gunicorn.pid)

    def stop_gunicorn(self) -> None:
        if self.gunicorn is not None:
            self.procs.stop(self.gunicorn)
            self.gunicorn = None

    # Load -------------------------------------------------------------------------------------

    def cpu_roles(self) -> dict[str, list[int]]:
        roles = {"sink": [self.sink_process.pid], "redis": [self.redis.process.pid]}
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

    def load(self, job: dict, *, timeout: float = 900, env: dict[str, str] | None = None) -> dict:
        """Run one job in the load generator process (with the app's environment, or `env`)
        and return its result."""
        job.setdefault("url", getattr(self, "url", ""))
        result = subprocess.run(
            [PYTHON, "-m", "bench.load", json.dumps(job)],
            cwd=ROOT,
            env={**(env or self.env), "PYTHONPATH": str(ROOT)},
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
