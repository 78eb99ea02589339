"""Per-provider pacing: the sliding second, the rolling day in hourly buckets, both taken or
neither, counts shared between processes through the real Redis, failing open when Redis is
down; and the local pacer's same rules on a fake clock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mailer import roundtrip
from mailer.delivery.pacing import (
    HOUR,
    UNREACHABLE,
    Limits,
    LocalPacer,
    RedisPacer,
    Usage,
    pacer,
)

ROOT = Path(__file__).resolve().parents[2]
DAY = 24 * HOUR


def redis_pacer() -> RedisPacer:
    found = pacer()
    assert isinstance(found, RedisPacer), "tests run with django-redis (bin/with-redis)"
    return found


def pace_keys() -> list[bytes]:
    codec = roundtrip.codec()
    return codec.get_client().keys(codec.make_key("pace:*"))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# Redis --------------------------------------------------------------------------------------


def test_no_limits_is_granted_without_touching_redis():
    slot = redis_pacer().reserve("provider:free", Limits(), units=50)
    assert slot.granted and slot.reason == ""
    assert pace_keys() == []


def test_sliding_second_refuses_the_sixth_until_the_oldest_leaves():
    pace, limits = redis_pacer(), Limits(per_second=5)
    assert all(pace.reserve("provider:1", limits).granted for _ in range(5))
    refused = pace.reserve("provider:1", limits)
    assert not refused.granted
    assert 0 < refused.wait <= 1
    assert refused.reason == "at its limit of 5 a second"
    time.sleep(refused.wait)
    assert pace.reserve("provider:1", limits).granted


def test_units_count_and_a_request_above_the_limit_needs_an_empty_window():
    pace, limits = redis_pacer(), Limits(per_second=5)
    assert pace.reserve("provider:2", limits, units=3).granted
    assert not pace.reserve("provider:2", limits, units=3).granted
    assert pace.reserve("provider:2", limits, units=2).granted
    assert not pace.reserve("provider:2", limits, units=1).granted

    assert pace.reserve("provider:3", limits, units=1).granted
    too_big = pace.reserve("provider:3", limits, units=7)
    assert not too_big.granted and 0 < too_big.wait <= 1
    time.sleep(too_big.wait)
    assert pace.reserve("provider:3", limits, units=7).granted  # the window was empty
    after = pace.reserve("provider:3", limits, units=1)
    assert not after.granted and after.wait > 0.9  # 7 units fill it for a whole second


def test_rolling_day_refuses_past_the_limit():
    pace, limits = redis_pacer(), Limits(per_day=3)
    assert [pace.reserve("provider:4", limits).granted for _ in range(3)] == [True] * 3
    refused = pace.reserve("provider:4", limits)
    assert not refused.granted
    assert refused.reason == "at its limit of 3 a day (rolling 24 h)"
    # Everything sits in the current hour's bucket: it leaves the window 24 h after that hour began.
    hour_start = refused.at // HOUR * HOUR
    assert refused.wait == pytest.approx(hour_start + DAY - refused.at, abs=1e-3)
    assert pace.reserve("provider:5", limits, units=10).granted  # above the limit, at 0
    assert not pace.reserve("provider:5", limits).granted


def test_both_limits_are_taken_or_neither():
    pace = redis_pacer()
    day_bound = Limits(per_second=5, per_day=3)
    assert [pace.reserve("provider:6", day_bound).granted for _ in range(4)] == [True] * 3 + [False]
    second_bound = Limits(per_second=2, per_day=100)
    assert [pace.reserve("provider:7", second_bound).granted for _ in range(3)] == [
        True,
        True,
        False,
    ]
    usage = pace.usage(["provider:6", "provider:7"])
    assert usage == {"provider:6": Usage(3, 3), "provider:7": Usage(2, 2)}


def test_usage_of_several_providers_in_one_call():
    pace, limits = redis_pacer(), Limits(per_second=10, per_day=1000)
    pace.reserve("provider:8", limits, units=3)
    pace.reserve("provider:9", limits)
    pace.reserve("provider:9", Limits(per_day=1000), units=4)
    assert pace.usage(["provider:8", "provider:9", "provider:10"]) == {
        "provider:8": Usage(last_second=3, last_day=3),
        "provider:9": Usage(last_second=1, last_day=5),
        "provider:10": Usage(last_second=0, last_day=0),
    }
    assert pace.usage([]) == {}


def test_unreachable_redis_fails_open_fast(settings, closed_port):
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
        }
    }
    pace = redis_pacer()
    started = time.monotonic()
    slots = [pace.reserve("provider:11", Limits(per_second=1)) for _ in range(3)]
    assert time.monotonic() - started < 2
    assert all(slot.granted and slot.reason == UNREACHABLE for slot in slots)
    assert "unreachable" in UNREACHABLE
    assert pace.usage(["provider:11"]) == {}


CHILD = """
import json, sys, time, django
django.setup()
from mailer.delivery.pacing import Limits, pacer
key, start = sys.argv[1], float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
granted = []
while time.time() < start + 2.5:
    slot = pacer().reserve(key, Limits(per_second=5))
    if slot.granted:
        granted.append(slot.at)
print(json.dumps(granted))
"""


def test_no_second_holds_more_than_the_limit_across_processes():
    key = f"provider:shared-{os.getpid()}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    start = time.time() + 3  # time for every child to set Django up, then all go at once
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, key, str(start)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    times = sorted(t for child in children for t in json.loads(child.communicate(timeout=60)[0]))
    assert all(child.returncode == 0 for child in children)
    assert len(times) >= 10, times
    # Any 6 grants in a row span at least a second: no 1-second span holds more than 5.
    spans = [later - earlier for earlier, later in zip(times, times[5:], strict=False)]
    assert min(spans) >= 1 - 1e-6, spans


# The local pacer ----------------------------------------------------------------------------


def test_local_sliding_second():
    clock = Clock(1000.0)
    pace, limits = LocalPacer(clock), Limits(per_second=5)
    for n in range(5):
        clock.now = 1000.0 + n / 10
        assert pace.reserve("provider:1", limits).granted
    clock.now = 1000.5
    refused = pace.reserve("provider:1", limits)
    assert (refused.granted, refused.wait) == (False, pytest.approx(0.5))
    assert refused.reason == "at its limit of 5 a second"
    clock.now = 1001.0  # the first one left the window
    assert pace.reserve("provider:1", limits).granted
    assert not pace.reserve("provider:1", limits).granted
    assert pace.usage(["provider:1"]) == {"provider:1": Usage(5, 0)}


def test_local_units():
    clock = Clock(1000.0)
    pace, limits = LocalPacer(clock), Limits(per_second=5)
    assert pace.reserve("p", limits, units=3).granted
    assert not pace.reserve("p", limits, units=3).granted
    assert pace.reserve("p", limits, units=2).granted
    clock.now = 1000.5
    too_big = pace.reserve("p", limits, units=7)
    assert (too_big.granted, too_big.wait) == (False, pytest.approx(0.5))
    clock.now = 1001.0
    assert pace.reserve("p", limits, units=7).granted
    clock.now = 1001.9
    assert pace.reserve("p", limits, units=1).wait == pytest.approx(0.1)


def test_local_rolling_day():
    first_hour = 500_000 * HOUR
    clock = Clock(first_hour + 600)
    pace, limits = LocalPacer(clock), Limits(per_day=200)
    assert all(pace.reserve("p", limits).granted for _ in range(150))
    clock.now = first_hour + 5 * HOUR + 60
    assert all(pace.reserve("p", limits).granted for _ in range(50))
    clock.now = first_hour + 6 * HOUR
    refused = pace.reserve("p", limits)
    assert not refused.granted
    assert refused.reason == "at its limit of 200 a day (rolling 24 h)"
    # The first hour's 150 leave when the hour 24 h after it begins.
    assert refused.wait == pytest.approx(18 * HOUR)
    # A request needing more than those 150 waits for the later hour too.
    assert pace.reserve("p", limits, units=151).wait == pytest.approx(23 * HOUR)
    clock.now = first_hour + DAY
    assert pace.usage(["p"]) == {"p": Usage(0, 50)}
    assert pace.reserve("p", limits, units=150).granted
    assert not pace.reserve("p", limits).granted


def test_pacer_is_local_without_django_redis(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    local = pacer()
    assert isinstance(local, LocalPacer) and pacer() is local
    assert local.reserve("provider:local-check", Limits(per_second=1)).granted
    local.clear()
