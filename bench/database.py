"""The seeded SQLite database: built once into bench/.cache, copied for each run."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

from bench.context import BENCH, PYTHON, ROOT

CACHE = BENCH / ".cache"


def seed_key(rows: int) -> str:
    """Cached seed files are keyed by the migration state, Django's version and the seed code."""
    from bench import seed

    digest = hashlib.sha256()
    for path in sorted((ROOT / "mailer" / "migrations").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    digest.update(Path(seed.__file__).read_bytes())
    digest.update(__import__("django").get_version().encode())
    return f"seed-{rows}-{digest.hexdigest()[:16]}"


def _build(bench, key: str, cached: Path, info_path: Path) -> dict:
    """Seed a fresh database in a subprocess and keep it in the cache under `key`."""
    rows = bench.sizes.rows
    CACHE.mkdir(exist_ok=True)
    for old in CACHE.glob(f"seed-{rows}-*"):
        old.unlink()
    building = CACHE / f"{key}.building.sqlite3"
    for stale in CACHE.glob(f"{key}.building.sqlite3*"):
        stale.unlink()
    bench.log(f"seeding {rows:,} emails (cached afterwards as {cached.name})")
    started = time.monotonic()
    result = subprocess.run(
        [PYTHON, "-m", "bench.seed", str(rows)],
        cwd=ROOT,
        env={**bench.env, "SQLITE_PATH": str(building)},
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
    return info


def prepare(bench) -> None:
    """The seeded database from bench/.cache (built when the migrations changed), copied."""
    key = seed_key(bench.sizes.rows)
    cached = CACHE / f"{key}.sqlite3"
    info_path = CACHE / f"{key}.json"
    if not cached.exists() or not info_path.exists():
        info = _build(bench, key, cached, info_path)
    else:
        info = {**json.loads(info_path.read_text()), "cached": True}
    started = time.monotonic()
    shutil.copyfile(cached, bench.env["SQLITE_PATH"])
    info["copy_seconds"] = round(time.monotonic() - started, 2)
    info["key"] = key
    bench.results["seed"] = info
    bench.log(
        f"database: {info['rows']:,} emails, inserted in {info['seconds']} s "
        f"({'from cache' if info['cached'] else 'seeded now'})"
    )
