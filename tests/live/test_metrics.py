"""/metrics (README: Metrics): protection, what each metric counts, and the counters of several
gunicorn workers (and a Celery worker's pool) adding up, scraped from the real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from harness.api import ApiClient
from harness.ports import free_port
from harness.procs import children
from harness.smtp import ScriptedHandler, SmtpServer
from harness.waiting import wait_until
from mailer import metrics
from mailer.delivery.breaker import breaker
from mailer.metrics import collectors
from mailer.models import Email, EmailStatus, ProviderConfig
from mailer.selectors.email_lists import email_list
from tests.appserver import create_account, start_app_server
from tests.queue_site import start_queue_site
from tests.workers import start_worker

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-" + "s" * 30


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """{(sample name, labels): value} of a scrape."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def names(samples: dict) -> set[str]:
    return {name for name, _ in samples}


# Protection (in-process) ----------------------------------------------------------------------


@pytest.fixture
def scrape(client, settings):
    settings.ALLOWED_HOSTS = ["testserver"]

    def get(*, token: str | None = None, remote: str = "127.0.0.1", **headers):
        if token is not None:
            headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        return client.get("/metrics", REMOTE_ADDR=remote, **headers)

    return get


@pytest.mark.django_db
def test_metrics_answer_404_while_neither_a_token_nor_networks_are_set(scrape, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", []
    assert scrape().status_code == 404
    assert scrape(token="anything").status_code == 404


@pytest.mark.django_db
def test_the_token_is_required_as_a_bearer_header(scrape, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, []
    refused = scrape()
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert scrape(token="wrong").status_code == 401
    assert scrape(HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    answer = scrape(token=TOKEN, remote="203.0.113.9")  # any address, with the token
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain; version=0.0.4")
    assert answer["Cache-Control"].startswith("max-age=0")
    assert "emailservice_provider_attempts" in answer.content.decode()


@pytest.mark.django_db
def test_outside_the_allowed_networks_is_refused_whatever_x_forwarded_for_says(scrape, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = "", ["10.0.0.0/8", "::1/128"]
    settings.TRUSTED_PROXIES = []
    assert scrape(remote="10.1.2.3").status_code == 200
    assert scrape(remote="::1").status_code == 200
    assert scrape(remote="127.0.0.1").status_code == 403
    # No proxy is trusted: the forwarded address is anyone's to write.
    assert scrape(remote="192.0.2.7", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 403


@pytest.mark.django_db
def test_with_both_set_both_are_required(scrape, settings):
    settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS = TOKEN, ["127.0.0.0/8"]
    assert scrape(remote="127.0.0.1").status_code == 401
    assert scrape(remote="192.0.2.7", token=TOKEN).status_code == 403
    assert scrape(remote="127.0.0.1", token=TOKEN).status_code == 200


def test_a_network_that_is_not_one_stops_the_settings():
    env = {**os.environ, "METRICS_ALLOWED_NETWORKS": "10.0.0.0/8,nonsense"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", "import emailservice.settings"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "METRICS_ALLOWED_NETWORKS holds 'nonsense'" in result.stderr


# What is measured (in-process) ----------------------------------------------------------------


def _queued(account, next_attempt_at) -> Email:
    return Email.objects.create(
        account=account, from_email="a@example.com", to=["b@example.org"],
        status=EmailStatus.QUEUED, next_attempt_at=next_attempt_at,
    )  # fmt: skip


@pytest.mark.django_db
def test_the_queue_is_read_at_scrape_time_in_one_indexed_query(account):
    now = timezone.now()
    _queued(account, now - timedelta(seconds=90))  # due for 90 s: nobody took it
    _queued(account, now - timedelta(seconds=5))
    _queued(account, now + timedelta(hours=1))  # waiting for its retry
    Email.objects.create(account=account, from_email="a@example.com", status=EmailStatus.SENT)
    with CaptureQueriesContext(connection) as queries:
        families = {family.name: family for family in metrics.QueueCollector().collect()}
    assert len(queries) == 1
    assert families["emailservice_queue_depth"].samples[0].value == 3
    assert families["emailservice_queue_due"].samples[0].value == 2
    assert 90 <= families["emailservice_queue_oldest_age_seconds"].samples[0].value < 120
    if connection.vendor == "sqlite":  # only the queued rows' partial index is read
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + queries[0]["sql"])
            plan = " ".join(str(row) for row in cursor.fetchall())
        assert "email_queued_due" in plan, plan


def _provider(account, name: str, **fields) -> ProviderConfig:
    return ProviderConfig.objects.create(
        account=account, kind="smtp", name=name, priority=fields.pop("priority", 10),
        settings={"host": "127.0.0.1", "port": 9, "security": "none"}, **fields,
    )  # fmt: skip


@pytest.mark.django_db
def test_circuits_list_the_ones_not_closed_up_to_the_limit_and_count_all(account, settings):
    configs = [_provider(account, f"p{index}", priority=index) for index in range(4)]
    disabled = _provider(account, "off", enabled=False, priority=9)
    circuit_breaker = breaker()
    for config in (configs[0], configs[1], disabled):
        circuit_breaker.record_failure(config.breaker_key, error="down", trip_now=True)
    try:
        settings.METRICS_MAX_CIRCUITS = 1
        families = {family.name: family for family in metrics.CircuitCollector().collect()}
        listed = families["emailservice_circuit_state"].samples
        assert [(s.labels, s.value) for s in listed] == [
            ({"config": str(configs[0].pk), "kind": "smtp"}, 2)
        ]
        totals = {s.labels["state"]: s.value for s in families["emailservice_circuits"].samples}
        # Four enabled configs and the site's own mailers (MAIL_PROVIDER_URLS; none while the
        # test runner swaps MAILERS for its outbox): the disabled config is not in use.
        site = sum(1 for key, _, _ in collectors._circuits() if key.startswith("mailer:"))
        assert totals == {"closed": 2 + site, "open": 2, "half_open": 0, "unknown": 0}
        settings.METRICS_MAX_CIRCUITS = 100
        listed = next(metrics.CircuitCollector().collect()).samples
        assert {s.labels["config"] for s in listed} == {str(configs[0].pk), str(configs[1].pk)}
    finally:
        for config in (*configs, disabled):
            circuit_breaker.reset(config.breaker_key)


@pytest.mark.django_db
def test_list_pages_count_cache_hits_and_misses(account):
    hits, misses = metrics.LIST_CACHE_HITS._value.get(), metrics.LIST_CACHE_MISSES._value.get()
    email_list(account_id=account.pk)
    email_list(account_id=account.pk)
    assert metrics.LIST_CACHE_MISSES._value.get() - misses == 1
    assert metrics.LIST_CACHE_HITS._value.get() - hits == 1


def test_provider_config_labels_are_bounded_per_process(settings, monkeypatch):
    monkeypatch.setattr(metrics, "_config_labels", set())
    settings.METRICS_MAX_PROVIDER_LABELS = 2
    assert [metrics._config_label(c) for c in ("1", "2", "3", "1")] == ["1", "2", "other", "1"]


# The real processes ------------------------------------------------------------------------------


def scrape_live(base_url: str, token: str | None = TOKEN) -> tuple[int, str]:
    """GET /metrics of a web server or a worker's exporter: (status, text)."""
    response = ApiClient.http(base_url, token).get("/metrics")
    return response.status_code, response.content.decode()


def per_process_sent(directory: Path) -> dict[str, float]:
    """Sent attempts as each gunicorn worker recorded them in its own file: {pid: count}."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        pid = path.stem.split("_")[-1]
        counts[pid] = sum(
            value
            for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path))
            if json.loads(key)[1] == "emailservice_provider_attempts_total"
            and json.loads(key)[2].get("outcome") == "sent"
        )
    return counts


@pytest.fixture
def smtp_pair():
    failing = SmtpServer(ScriptedHandler(mail_reply="421 4.7.0 Try later")).start()
    sink = SmtpServer().start()
    yield failing, sink
    failing.stop()
    sink.stop()


def test_gunicorn_workers_add_up_attempts_failover_and_the_open_circuit(tmp_path, smtp_pair):
    failing, sink = smtp_pair
    directory = tmp_path / "metrics"
    server = start_app_server(
        tmp_path, workers=2, BREAKER_THRESHOLD="1", METRICS_TOKEN=TOKEN,
        METRICS_ALLOWED_NETWORKS="127.0.0.0/8", PROMETHEUS_MULTIPROC_DIR=str(directory),
    )  # fmt: skip
    try:
        token = create_account(server, "ann", smtp_port=failing.port)  # provider 'sink': fails
        [first] = [
            row["id"]
            for row in server.factory(
                "rows", "mailer.ProviderConfig", "account__username=ann", "--fields", "id"
            )
        ]
        second = server.factory(
            "provider", "ann", "smtp", "--name", "backup", "--smtp-port", str(sink.port)
        )["id"]  # after 'sink' in order
        api = server.api(token)

        assert server.api().get("/metrics").status_code == 401
        assert server.api("wrong").get("/metrics").status_code == 401

        def send(index: int) -> None:
            response = api.post(
                "/api/v1/emails",
                {"from": "shop@example.com", "to": "ann@example.org",
                 "subject": f"Order {index}", "text": "Thanks."},
            )  # fmt: skip
            assert response.status_code == 201, response
            assert response.json()["sent_via"]["id"] == second, response

        # Concurrent sends, until both workers have handled some (each records in its own file).
        sent = 0
        with ThreadPoolExecutor(max_workers=6) as pool:
            while sent < 60:
                list(pool.map(send, range(sent, sent + 12)))
                sent += 12
                if sum(1 for count in per_process_sent(directory).values() if count) >= 2:
                    break
        per_worker = per_process_sent(directory)
        assert sum(1 for count in per_worker.values() if count) >= 2, per_worker
        assert sum(per_worker.values()) == sent == len(sink.received)

        rows = server.factory("rows", "mailer.DeliveryAttempt", "--fields", "provider_id,outcome")
        truth = Counter((str(row["provider_id"]), row["outcome"]) for row in rows)
        failed_first = truth[(str(first), "provider_error")]
        assert failed_first >= 1 and truth[(str(second), "sent")] == sent

        # Every scrape, whichever worker answers it, shows the sum over both.
        scrapes = [scrape_live(server.url) for _ in range(6)]
        assert {status for status, _ in scrapes} == {200}
        samples = parse(scrapes[-1][1])
        attempts = "emailservice_provider_attempts_total"
        for (config, outcome), count in truth.items():
            assert value(samples, attempts, kind="smtp", config=config, outcome=outcome) == count
        assert value(samples, attempts, kind="smtp", config=str(first), outcome="sent") == 0
        durations = "emailservice_provider_attempt_duration_seconds_count"
        assert value(samples, durations, kind="smtp", outcome="sent") == sent
        assert value(samples, durations, kind="smtp", outcome="provider_error") == failed_first
        assert value(samples, durations, kind="smtp", outcome="skipped") == 0
        assert value(samples, "emailservice_failovers_total", kind="smtp") == sent
        assert value(samples, "emailservice_sends_total", mode="sync", status="sent") == sent
        assert value(samples, "emailservice_sends_total", mode="sync", status="failed") == 0
        # One failure opens the circuit (BREAKER_THRESHOLD=1); it is listed, the other is not.
        assert value(samples, "emailservice_circuit_openings_total") == failed_first
        state = "emailservice_circuit_state"
        assert value(samples, state, config=str(first), kind="smtp") == 2
        assert (state, frozenset({"config": str(second), "kind": "smtp"}.items())) not in samples
        assert value(samples, "emailservice_circuits", state="open") == 1
        assert value(samples, "emailservice_queue_depth") == 0
        for _, text in scrapes:
            other = parse(text)
            for key in [key for key in samples if key[0] == attempts]:
                assert other[key] == samples[key]

        # The list cache: the first read of a page misses; its page is stored once its answer
        # is sent (mailer.api.emails), and the next read (any worker) then hits.
        before = parse(scrape_live(server.url)[1])
        assert api.get("/api/v1/emails", {"page": 1}).status_code == 200
        pages = f"{server.env['CACHE_KEY_PREFIX']}:*:emails:list:*"  # this server's only
        with redis.Redis.from_url(os.environ["REDIS_URL"]) as client:
            wait_until(lambda: client.keys(pages), timeout=30, what="the page to be cached")
        assert api.get("/api/v1/emails", {"page": 1}).status_code == 200
        after = parse(scrape_live(server.url)[1])
        for name in ("emailservice_list_cache_misses_total", "emailservice_list_cache_hits_total"):
            assert value(after, name) - value(before, name) == 1, name

        # A worker that exits (gunicorn starts another) leaves its counts in the sum.
        workers = children(server.process.pid)
        dead = next(int(pid) for pid, count in per_worker.items() if count and int(pid) in workers)
        os.kill(dead, signal.SIGTERM)
        wait_until(
            lambda: dead not in (now := children(server.process.pid)) and len(now) == 2,
            timeout=60, what="gunicorn to replace the worker",
        )  # fmt: skip
        samples = parse(scrape_live(server.url)[1])
        assert value(samples, attempts, kind="smtp", config=str(second), outcome="sent") == sent
        assert value(samples, "emailservice_sends_total", mode="sync", status="sent") == sent
    finally:
        server.stop()


def test_a_celery_worker_serves_its_pool_counters_and_the_web_the_queue(tmp_path):
    sink = SmtpServer().start()
    site, broker = start_queue_site(tmp_path, METRICS_TOKEN=TOKEN)
    try:
        token = create_account(site, "bob", smtp_port=sink.port)
        for index in range(6):
            response = site.api(token).post(
                "/api/v1/emails",
                {"from": "shop@example.com", "to": "bob@example.org",
                 "subject": f"Queued {index}", "text": "Later."},
            )  # fmt: skip
            assert response.status_code == 202, response
        time.sleep(1.1)  # so the oldest has been due for a second
        samples = parse(scrape_live(site.url)[1])
        assert value(samples, "emailservice_queue_depth") == 6
        assert value(samples, "emailservice_queue_due") == 6
        assert value(samples, "emailservice_queue_oldest_age_seconds") >= 1

        port = free_port()
        worker = start_worker(
            site, tmp_path, "metrics", concurrency=2, METRICS_WORKER_PORT=str(port),
            PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "worker-metrics"),
        )  # fmt: skip
        try:
            wait_until(lambda: len(sink.received) == 6, timeout=60, what="6 emails delivered")
            url = f"http://127.0.0.1:{port}"
            wait_until(lambda: scrape_live(url)[0] == 200, timeout=10, what="serving")
            assert scrape_live(url, token=None)[0] == 401
            worker_samples = parse(scrape_live(url)[1])
            assert value(worker_samples, "emailservice_sends_total", mode="queue",
                         status="sent") == 6  # fmt: skip
            sent = sum(
                count
                for (name, labels), count in worker_samples.items()
                if name == "emailservice_provider_attempts_total"
                and dict(labels)["outcome"] == "sent"
            )
            assert sent == 6
            # Counted in the pool processes' files, served by the main process.
            assert list((tmp_path / "worker-metrics").glob("counter_*.db"))
            # Scrape-time gauges are the web's alone (the same on every host).
            assert "emailservice_queue_depth" not in names(worker_samples)
            samples = parse(scrape_live(site.url)[1])
            assert value(samples, "emailservice_queue_depth") == 0
            # The web's own counters saw no attempt: the worker made them all.
            assert not any(
                name == "emailservice_provider_attempts_total" and count
                for (name, _), count in samples.items()
            )
        finally:
            worker.stop()
    finally:
        site.stop()
        broker.stop()
        sink.stop()
