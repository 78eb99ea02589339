"""Redis hanging, losing writes or filling up must cost neither correctness nor the log (issue 9,
item 6). Against the real stack: gunicorn with production settings and 2 workers, a
redis-server of this module's own (paused with SIGSTOP to hang it), a TCP link in front of it
that can drop what goes through (a hang that loses writes, which SIGSTOP can't: a stopped Redis
runs what it buffered once it continues) and an aiosmtpd sink.

Every wait is for an event with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from harness import ROOT
from harness.redis import RedisServer
from harness.smtp import SmtpServer
from harness.waiting import wait_until
from mailer import cacheguard, listcache, selectors
from mailer.models import Email
from tests.appserver import AppServer, create_account, start_app_server

STALE = 10  # LIST_CACHE_STALE_SECONDS of the app under test
RETRY = 1.0  # CACHE_RETRY_SECONDS
PREVIEW = 200  # LIST_TEXT_PREVIEW_CHARS
CAP = 8192  # LIST_CACHE_MAX_BYTES
# What one request may cost while Redis hangs: every cache user (lists, counts, the rate limit,
# the breaker) goes through mailer.cacheguard, so at most one probe per CACHE_RETRY_SECONDS
# waits CACHE_CONNECT_TIMEOUT (0.25) + CACHE_TIMEOUT (0.5). Plus slack for a loaded machine.
LIST_SECONDS = 4.0
SEND_SECONDS = 10.0


# A link in front of this module's redis-server that can drop what it carries ------------------


class DroppingLink:
    """A TCP proxy to Redis. While `dropping`, what clients send is swallowed (it never reaches
    Redis) and nothing comes back, as on a dead network path; a connection that lost bytes
    stays dead (the client gives up on it after its timeout)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dropping = threading.Event()
        self.swallowed = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @contextmanager
    def dropped(self) -> Iterator[None]:
        self.dropping.set()
        try:
            yield
        finally:
            self.dropping.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                return
            with self._lock:
                self._sockets += [client, upstream]
            dead = threading.Event()
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(
                    target=self._pump, args=(source, target, dead), daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket, dead: threading.Event):
        try:
            while data := source.recv(65536):
                if self.dropping.is_set() or dead.is_set():
                    dead.set()
                    with self._lock:
                        self.swallowed += len(data)
                    continue
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()


# gunicorn's log -----------------------------------------------------------------------------

_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ([A-Z]+) (\S+) (.*)$")


@dataclass
class Record:
    level: str
    logger: str
    message: str
    more: list[str] = field(default_factory=list)

    @property
    def traceback(self) -> bool:
        return any(line.startswith("Traceback (most recent call last)") for line in self.more)


class Log:
    """The app's log (gunicorn's stderr, where Django logs), read from a mark on."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.start = 0

    def mark(self) -> None:
        self.start = self.path.stat().st_size

    def records(self, *, whole: bool = False) -> list[Record]:
        with open(self.path, encoding="utf-8", errors="replace") as log:
            log.seek(0 if whole else self.start)
            text = log.read()
        records: list[Record] = []
        for line in text.splitlines():
            found = _RECORD.match(line)
            if found:
                records.append(Record(*found.groups()))
            elif line.startswith("[") or not records:  # gunicorn's own lines
                records.append(Record("", "gunicorn", line))
            else:
                records[-1].more.append(line)
        return records

    def of(self, logger: str, text: str = "", *, whole: bool = False) -> list[Record]:
        records = self.records(whole=whole)
        return [r for r in records if r.logger == logger and text in r.message]

    def outages_open(self) -> int:
        """Outages a worker logged the start of and not yet the end."""
        started = len(self.of("mailer.cache", "cache unreachable", whole=True))
        return started - len(self.of("mailer.cache", "reachable again", whole=True))


# The stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    server: AppServer
    redis: RedisServer
    link: DroppingLink
    sink: SmtpServer
    log: Log
    prefix: str

    def timed(self, method: str, path: str, body=None, *, token: str) -> tuple[float, int, dict]:
        started = time.monotonic()
        response = self.server.api(token).request(method, path, body)
        return time.monotonic() - started, response.status_code, response.json()

    def send(self, token: str, subject: str, text: str = "Thanks.") -> int:
        email = {"from": "shop@example.com", "to": "ann@example.org", "subject": subject,
                 "text": text}  # fmt: skip
        response = self.server.api(token).post("/api/v1/emails", email)
        assert response.status_code == 201, response
        return response.json()["id"]

    def listed(self, token: str, **query: object) -> dict:
        response = self.server.api(token).get("/api/v1/emails", query)
        assert response.status_code == 200, response
        return response.json()

    def account_id(self, username: str) -> int:
        [row] = self.server.factory("rows", "auth.User", f"username={username}", "--fields", "id")
        return row["id"]

    def version_key(self, account_id: int) -> str:
        return f"{self.prefix}:1:emails:version:{account_id}"

    def page_keys(self, account_id: int) -> list[bytes]:
        return list(self.redis.client.scan_iter(f"{self.prefix}:1:emails:list:{account_id}:*"))

    def health(self, path: str) -> tuple[float, int, dict]:
        started = time.monotonic()
        response = self.server.api().get(path)
        return time.monotonic() - started, response.status_code, response.json()

    def cache_answering(self) -> bool:
        """Both workers (as far as a few requests reach them) use the cache again."""
        return all(self.health("/readyz")[1] == 200 for _ in range(6))

    def outages_over(self) -> bool:
        """Every outage a worker logged has its end logged too (the calls made here keep the
        workers using the cache until they do)."""
        return self.cache_answering() and self.log.outages_open() == 0


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Iterator[RedisServer]:
    """This module's redis-server: the app's cache, and hangable."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, store) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("redis-hardening")
    link = DroppingLink(store.port)
    sink = SmtpServer().start()
    server = None
    try:
        server = start_app_server(
            tmp,
            workers=2,
            REDIS_URL=f"redis://127.0.0.1:{link.port}/0",
            LIST_CACHE_STALE_SECONDS=str(STALE),
            CACHE_RETRY_SECONDS=str(RETRY),
            LIST_TEXT_PREVIEW_CHARS=str(PREVIEW),
            LIST_CACHE_MAX_BYTES=str(CAP),
        )
        yield Stack(server, store, link, sink, Log(tmp / "gunicorn.log"),
                    server.env["CACHE_KEY_PREFIX"])  # fmt: skip
    finally:
        if server is not None:
            server.stop()
        sink.stop()
        link.stop()


@pytest.fixture
def ready(stack: Stack) -> Stack:
    """The stack with its cache answering in every worker (an earlier test may have hung it),
    and the end of every outage logged."""
    wait_until(stack.outages_over, timeout=60, what="the workers using the cache again", every=0.2)
    return stack


# (a) A lost invalidation is outlived within LIST_CACHE_STALE_SECONDS --------------------------


def _writer(stack: Stack, username: str, subject: str) -> subprocess.Popen:
    """A process of the app (as a Celery worker would be) that sends one email when told to,
    then exits: it can't retry a failed invalidation later."""
    code = (
        "import sys\n"
        "from django.contrib.auth import get_user_model\n"
        "from mailer.services import email_send\n"
        "from mailer.validation import OutgoingEmail\n"
        f"user = get_user_model().objects.get(username={username!r})\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
        "outgoing = OutgoingEmail(from_email='shop@example.com', to=['ann@example.org'],\n"
        f"                         subject={subject!r}, text='Thanks.')\n"
        "result = email_send(account=user, outgoing=outgoing)\n"
        "print('sent', result.email.pk, result.email.status, flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=stack.server.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:  # after Django's shell says what it imported
        if line.strip() == "ready":
            return process
    raise AssertionError(f"the writer exited with {process.wait()} before it was ready")


def listed_within_the_bound(stack: Stack, token: str, email_id: int, set_by: float) -> list:
    """List until email_id shows; the stale answers seen before. Any list asked for more than
    STALE seconds after `set_by` (when the account's live version had been set, before the
    write) must show it (1 s of slack for the request's own way to Redis)."""
    stale = []
    while True:
        asked = time.monotonic()
        ids = tuple(e["id"] for e in stack.listed(token)["results"])
        if email_id in ids:
            return stale
        assert asked < set_by + STALE + 1, f"still stale {asked - set_by:.1f} s after the write"
        stale.append(ids)
        time.sleep(0.1)


def test_a_lost_invalidation_shows_within_the_bound_even_when_its_writer_is_gone(ready):
    stack = ready
    token = create_account(stack.server, "ann", smtp_port=stack.sink.port)
    account = stack.account_id("ann")
    first = stack.send(token, "before")
    key = stack.version_key(account)
    wait_until(lambda: stack.listed(token)["count"] == 1 and stack.page_keys(account),
               timeout=60, what="the first page cached")  # fmt: skip
    version = stack.redis.client.get(key)
    set_by = time.monotonic()  # the live version was set at or before this moment
    assert version is not None and 0 < stack.redis.client.ttl(key) <= STALE

    writer = _writer(stack, "ann", "during the drop")
    swallowed = stack.link.swallowed
    with stack.link.dropped():
        out, _ = writer.communicate("go\n", timeout=60)
    assert writer.returncode == 0, out
    line = next(line.split() for line in out.splitlines() if line.startswith("sent "))
    assert line[2] == "sent", line
    written = int(line[1])
    # Its invalidation never reached Redis, and the process that owed it is gone.
    assert stack.link.swallowed > swallowed
    assert stack.redis.client.get(key) in (version, None)

    left = stack.redis.client.pttl(key) / 1000
    stale = listed_within_the_bound(stack, token, written, set_by)
    assert set(stale) <= {(first,)}
    if left > 2:  # unless a loaded machine took the whole bound: the stale page was still there
        assert stale


def test_a_send_while_redis_drops_writes_answers_and_lists_within_the_bound(ready):
    stack = ready
    token = create_account(stack.server, "al", smtp_port=stack.sink.port)
    account = stack.account_id("al")
    first = stack.send(token, "before")
    wait_until(lambda: stack.listed(token)["count"] == 1 and stack.page_keys(account),
               timeout=60, what="the first page cached")  # fmt: skip
    set_by = time.monotonic()
    body = {"from": "shop@example.com", "to": "ann@example.org", "subject": "during"}
    with stack.link.dropped():
        took, status, sent = stack.timed("POST", "/api/v1/emails", body | {"text": "Hi"},
                                         token=token)  # fmt: skip
        assert status == 201 and sent["status"] == "sent", sent
        assert took < SEND_SECONDS
        # Meanwhile lists come from the database, the new email included.
        took, status, listing = stack.timed("GET", "/api/v1/emails", token=token)
        assert status == 200 and took < LIST_SECONDS
        assert [e["id"] for e in listing["results"]] == [sent["id"], first]
    stale = listed_within_the_bound(stack, token, sent["id"], set_by)
    assert set(stale) <= {(first,)}


# (b) A hung Redis: every request answers in bounded time, and the log says it once -----------


def test_a_hung_redis_costs_each_request_little_and_is_logged_once_per_worker(ready):
    stack = ready
    token = create_account(stack.server, "bea", smtp_port=stack.sink.port)
    first = stack.send(token, "before")
    stack.listed(token)
    stack.log.mark()
    sends: list[tuple[float, float, int]] = [(0.0, 0.0, first)]  # (started, answered, id)
    lists: list[tuple[float, float, list[int]]] = []

    def client(sender: bool) -> None:
        """25 requests, one at a time: lists (the API's and the original's), and 5 sends."""
        for n in range(25):
            started = time.monotonic()
            if sender and n % 5 == 2:
                email = {"from": "shop@example.com", "to": "ann@example.org",
                         "subject": f"n{n}", "text": "Hi"}  # fmt: skip
                _, status, body = stack.timed("POST", "/api/v1/emails", email, token=token)
                assert status == 201 and body["status"] == "sent", body
                sends.append((started, time.monotonic(), body["id"]))
                continue
            path = "/api/v1/emails" if n % 2 else f"/view_sent_emails/?page=1&TOKEN={token}"
            _, status, body = stack.timed("GET", path, token=token)
            assert status == 200, body
            lists.append((started, time.monotonic(), [e["id"] for e in body["results"]]))

    with stack.redis.hung():  # 50 requests from 2 clients, as 2 workers serve them
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(client, (True, False)))
    assert len(sends) == 6 and len(lists) == 45
    for started, answered, ids in lists:
        # From the database: every email sent before the list was asked for is on it.
        assert {i for _, done, i in sends if done < started} <= set(ids) <= {i for *_, i in sends}
        assert answered - started < LIST_SECONDS
    assert all(answered - started < SEND_SECONDS for started, answered, _ in sends[1:]), sends

    # Redis is back: each worker that said it was gone says once that it is back.
    gone = stack.log.of("mailer.cache", "cache unreachable")
    wait_until(stack.outages_over, timeout=60, what="one 'reachable again' line per outage",
               every=0.2)  # fmt: skip
    records = stack.log.records()
    ours = [r for r in records if r.logger != "gunicorn"]
    assert 1 <= len(gone) <= 2, [r.message for r in gone]  # one per worker at most
    assert len(stack.log.of("mailer.cache", "reachable again")) == len(gone)
    assert len(ours) < 10, [(r.logger, r.message) for r in ours]
    assert not [r for r in ours if r.traceback or r.level in ("ERROR", "CRITICAL")]
    assert not [r for r in records if "WORKER TIMEOUT" in r.message]


# (c) Memory: pages are summaries, and a page over the cap is not cached ----------------------


def test_big_bodies_stay_out_of_redis_and_the_original_list_still_returns_them(ready):
    stack = ready
    token = create_account(stack.server, "cat", smtp_port=stack.sink.port)
    account = stack.account_id("cat")
    texts = {}
    for n in range(20):
        text = f"{n:02d}" + "x" * 1_000_000
        texts[stack.send(token, f"big {n}", text)] = text

    def cached_pages() -> dict[bytes, int]:
        for query in ({"page": 1}, {"page": 2}, {"page_size": 100}):
            stack.listed(token, **query)
        return {key: stack.redis.client.strlen(key) for key in stack.page_keys(account)}

    def two_pages() -> dict[bytes, int] | None:
        pages = cached_pages()
        return pages if len(pages) >= 2 else None

    pages = wait_until(two_pages, timeout=60, what="pages 1 and 2 cached")
    # Pages 1 and 2 (10 rows each) are cached, each under the cap; the page of 20 rows is over
    # it, so it is served from the database each time and never stored.
    assert len(pages) == 2, pages
    assert all(size <= CAP for size in pages.values()), pages
    assert sum(stack.redis.client.memory_usage(key) for key in pages) < 3 * CAP
    assert not [key for key in pages if key.endswith(b":100")]
    listing = stack.listed(token, page_size=100)
    assert listing["count"] == 20 and len(listing["results"]) == 20
    assert all("text" not in row for row in listing["results"])

    # The original contract lists whole bodies: read from the database for its 10 rows.
    for page in (1, 2):
        response = stack.server.api().get(f"/view_sent_emails/?page={page}&TOKEN={token}")
        assert response.status_code == 200
        body = response.json()
        assert {row["id"]: row["body_text"] for row in body["results"]} == {
            row["id"]: texts[row["id"]] for row in body["results"]
        }
    assert all(size <= CAP for size in cached_pages().values())


# (d) Health: liveness stays up without the cache, readiness says degraded --------------------


def test_healthz_stays_up_and_readyz_says_degraded_while_redis_hangs(ready):
    stack = ready
    with stack.redis.hung():
        answers = [stack.health("/healthz") for _ in range(20)]
        for took, status, body in answers:
            assert status == 200, body
            assert body["status"] == "ok" and body["database"] == "ok"
            assert body["cache"].startswith("error"), body
            assert took < LIST_SECONDS
        # Only a worker's probe (one per CACHE_RETRY_SECONDS) waits for Redis' timeout (0.5 s):
        # the other checks answer from what the worker already knows.
        waited = [took for took, *_ in answers if took >= 0.5]
        assert len(waited) <= len(answers) // 2, [round(took, 2) for took, *_ in answers]
        took, status, body = stack.health("/readyz")
        assert (status, body["status"], body["database"]) == (503, "degraded", "ok"), body
        assert body["cache"].startswith("error")
    wait_until(lambda: stack.health("/readyz")[1] == 200, timeout=60, what="/readyz ok again",
               every=0.2)  # fmt: skip
    healthy = (200, {"status": "ok", "database": "ok", "cache": "ok"})
    wait_until(
        lambda: stack.health("/healthz")[1:] == healthy, timeout=60, what="/healthz: cache ok"
    )


# In process: the pieces, against a redis-server of this module --------------------------------


@pytest.fixture
def private_cache(store, settings) -> Iterator[RedisServer]:
    """The test process' default cache on this module's redis-server (hangable), database 1,
    with no outage or owed bump left from another test."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{store.port}/1",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.5},
            "KEY_PREFIX": "in-process",
        }
    }
    settings.CACHE_RETRY_SECONDS = RETRY
    cacheguard._outages.clear()
    listcache._pending.clear()
    cache.clear()
    yield store
    cacheguard._outages.clear()
    listcache._pending.clear()


def test_guard_waits_once_per_retry_window_and_logs_one_line_each_way(private_cache, caplog):
    caplog.set_level(logging.WARNING, logger="mailer.cache")
    assert cacheguard.call("a read", lambda: cache.get("k"), "down") is None
    with private_cache.hung():
        started = time.monotonic()
        answers = [cacheguard.call("a read", lambda: cache.get("k"), "down") for _ in range(200)]
        took = time.monotonic() - started
        assert answers == ["down"] * 200
        assert took < 2  # one timeout (0.5 s), then no waiting: not 200 timeouts
        assert cacheguard.check().startswith("error: unreachable")
    wait_until(lambda: cacheguard.call("a read", lambda: cache.get("k") or "up", None) == "up",
               timeout=30, what="the cache answering", every=0.05)  # fmt: skip
    wait_until(lambda: cacheguard.call("a read", lambda: cache.get("k"), None) is None
               and "reachable again" in caplog.text, timeout=30, every=0.05,
               what="the end of the outage logged")  # fmt: skip
    lines = [r for r in caplog.records if r.name == "mailer.cache"]
    assert [r.getMessage().split(":")[0].split(" after")[0] for r in lines] == [
        "cache unreachable",
        "cache reachable again",
    ]
    assert not any(r.exc_info for r in lines)


def test_a_failed_bump_is_retried_and_its_account_read_from_the_database_meanwhile(
    private_cache, account
):
    def stored(subject: str) -> int:
        email = Email.objects.create(account=account, from_email="a@b.c", to=["d@e.f"],
                                     subject=subject, status="sent")  # fmt: skip
        return email.pk

    first = stored("first")
    assert [e["id"] for e in selectors.email_list(account_id=account.pk)["results"]] == [first]
    assert 0 < cache.ttl(f"emails:version:{account.pk}") <= listcache.stale_seconds()

    with private_cache.hung():
        second = stored("second")
        listcache.bump(account.pk)  # lost: Redis doesn't answer
        # This process knows it owes the bump: it reads the account from the database.
        assert [e["id"] for e in selectors.email_list(account_id=account.pk)["results"]] == [
            second,
            first,
        ]
    # Back: the next read pays the debt first, then the cache serves the current page.
    wait_until(lambda: listcache.version(account.pk) is not None, timeout=30, every=0.05,
               what="the bump retried")  # fmt: skip
    assert not listcache._pending
    assert [e["id"] for e in selectors.email_list(account_id=account.pk)["results"]] == [
        second,
        first,
    ]


def test_pacing_while_redis_hangs_fails_open_within_one_timeout(private_cache, account, smtp_sink):
    """A paced provider with a hung Redis: its limits can't be read, so sends go unpaced (mail
    must not stop for the cache), each costs at most one socket timeout per retry window, and
    the attempt is not held back or failed."""
    from harness.factories import make_smtp_provider
    from mailer.delivery.pacing import UNREACHABLE, Limits, pacer
    from mailer.services import email_send
    from tests.conftest import outgoing

    config = make_smtp_provider(account, smtp_sink.port, max_per_second=1)
    with private_cache.hung():
        started = time.monotonic()
        slots = [pacer().reserve(config.breaker_key, Limits(per_second=1)) for _ in range(50)]
        assert time.monotonic() - started < 2  # one timeout, then the guard answers at once
        assert all(slot.granted and slot.reason == UNREACHABLE for slot in slots)
        assert pacer().usage([config.breaker_key]) == {}
        sent = [email_send(account=account, outgoing=outgoing()).email for _ in range(3)]
        assert time.monotonic() - started < SEND_SECONDS
    assert [email.status for email in sent] == ["sent"] * 3
    assert len(smtp_sink.received) == 3


def test_pages_hold_previews_and_the_original_reads_whole_bodies_only_when_cut(
    client, account, settings
):
    from mailer.services import token_create

    settings.LIST_TEXT_PREVIEW_CHARS = 20
    raw = token_create(account=account, name="t")[1]
    short = Email.objects.create(account=account, from_email="a@b.c", to=["d@e.f"], text="short")
    page = selectors.email_list(account_id=account.pk)
    assert page["results"][0]["text_preview"] == "short"
    assert not page["results"][0]["text_truncated"]
    with CaptureQueriesContext(connection) as queries:
        body = client.get("/view_sent_emails/", {"TOKEN": raw}).json()
    assert body["results"][0]["body_text"] == "short"
    assert not [q for q in queries if '."text" FROM' in q["sql"]]  # no body read: none was cut

    long = Email.objects.create(account=account, from_email="a@b.c", to=["d@e.f"],
                                text="L" * 5000)  # fmt: skip
    listcache.bump(account.pk)
    row = selectors.email_list(account_id=account.pk)["results"][0]
    assert (row["id"], row["text_preview"], row["text_truncated"]) == (long.pk, "L" * 20, True)
    body = client.get("/view_sent_emails/", {"TOKEN": raw}).json()
    assert [r["body_text"] for r in body["results"]] == ["L" * 5000, "short"]
    assert short.pk == body["results"][1]["id"]


def test_a_page_over_the_cap_is_served_but_not_cached(account, settings):
    Email.objects.bulk_create(
        Email(account=account, from_email="a@b.c", to=[f"r{n}@example.org" for n in range(40)])
        for _ in range(10)
    )
    settings.LIST_CACHE_MAX_BYTES = 2000
    key = listcache.page_key(account.pk, "", "", 1, 10, "")  # no filter
    assert len(selectors.email_list(account_id=account.pk)["results"]) == 10
    assert cache.get(key) is None
    settings.LIST_CACHE_MAX_BYTES = 1_000_000
    selectors.email_list(account_id=account.pk)
    assert cache.get(key) is not None
