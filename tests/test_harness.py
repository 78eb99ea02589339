"""The shared harness itself: waits on events, process groups stopped whole, one API client."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from harness import procs
from harness.api import ApiClient
from harness.factories import loopback_smtp, make_smtp_provider, make_token
from harness.waiting import Exited, wait_until


def test_wait_until_returns_the_first_truthy_value():
    values = iter([0, None, "", "found"])
    assert wait_until(lambda: next(values), timeout=5, every=0, what="a value") == "found"


def test_wait_until_fails_past_its_deadline_without_progress():
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"timed out after 0\.3 s waiting for nothing"):
        wait_until(lambda: False, timeout=0.3, every=0.01, what="nothing")
    assert time.monotonic() - started < 2


def test_wait_until_waits_on_while_there_is_progress():
    clock = time.monotonic()
    moving = lambda: int((time.monotonic() - clock) / 0.1)  # noqa: E731 - changes every 0.1 s
    # Done after 0.6 s, twice the deadline: each change of progress() moved the deadline on.
    done = wait_until(lambda: time.monotonic() - clock > 0.6, timeout=0.3, every=0.01,
                      progress=moving, what="0.6 s")  # fmt: skip
    assert done


def test_wait_until_stops_at_once_when_the_process_exits():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(Exited, match="exited with 3 before the event"):
        wait_until(lambda: False, timeout=60, process=process, what="the event")


def test_stop_group_ends_the_whole_group_even_what_ignores_sigterm(tmp_path):
    # A leader that ignores SIGTERM, with a child (same group) that ignores it too.
    code = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    leader = procs.start([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert leader.stdout.readline() == b"ready\n"
    [child] = wait_until(lambda: procs.children(leader.pid), timeout=30, what="the child")
    procs.stop_group(leader, grace=0.5)
    assert leader.returncode == -9
    assert not procs.process_group_alive(leader.pid)
    assert procs._stat_fields(child)[:1] in ([], ["Z"])  # gone, or dead and not yet reaped


@pytest.mark.django_db
def test_one_api_client_shape_in_process(client, account, smtp_sink):
    make_smtp_provider(account, smtp_sink.port)
    api = ApiClient.django(client, make_token(account))
    sent = api.post("/api/v1/emails", {"from": "a@example.com", "to": "b@example.org",
                                       "subject": "s", "text": "t"})  # fmt: skip
    assert sent.status_code == 201 and sent["Content-Type"].startswith("application/json")
    listed = api.get("/api/v1/emails", {"page_size": 1})
    assert listed.json()["results"][0]["id"] == sent.json()["id"]
    assert api.with_token(None).get("/api/v1/emails").status_code == 401
    assert loopback_smtp(25) == {"host": "127.0.0.1", "port": 25, "security": "none"}


def test_the_sink_counts_a_message_sent_twice_once_as_distinct():
    """The bench times a drain to its last distinct email: a copy must not end it early."""
    import smtplib

    from harness.smtp import ScriptedHandler, SmtpServer

    server = SmtpServer(ScriptedHandler(keep=False)).start()
    try:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
            for message_id in ("<a@example.com>", "<b@example.com>", "<a@example.com>"):
                body = f"Message-ID: {message_id}\r\nSubject: x\r\n\r\nBody\r\nMessage-ID: <z>"
                client.sendmail("s@example.com", ["r@example.org"], body)
            client.sendmail("s@example.com", ["r@example.org"], "Subject: no id\r\n\r\nx")
        stats = server.handler.stats()
        assert (stats["count"], stats["distinct"]) == (4, 3)
        server.handler.reset()
        assert (server.handler.stats()["count"], server.handler.stats()["distinct"]) == (0, 0)
    finally:
        server.stop()
