"""A cursor walk over 10,000 emails under gunicorn while another process keeps storing emails
into the same SQLite file (issue 13): every email stored before the walk is seen exactly once,
each page newest first by (created_at, id), however the inserts interleave."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from urllib.parse import urlsplit

import pytest

from harness import ROOT
from tests.appserver import create_account, start_app_server

OLD = 10_000

# Seeds OLD emails over 1,250 instants (8 a instant on average, some on a whole second) in an
# order unrelated to their ids; prints their ids newest first, by (created_at, id).
SEED = f"""
import json
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from mailer import listcache
from mailer.models import Email
user = get_user_model().objects.get(username="walker")
base = timezone.now().replace(microsecond=0) - timedelta(days=1)
emails = Email.objects.bulk_create(
    Email(account=user, from_email="a@example.com", to=["b@example.org"], subject=f"old {{i}}",
          status="sent") for i in range({OLD}))
groups = {{}}
for i, email in enumerate(emails):
    groups.setdefault((i * 7919) % 1250, []).append(email.pk)
with transaction.atomic():
    for k, ids in groups.items():
        at = base + timedelta(seconds=k * 10, microseconds=(k % 3) * 250001)
        Email.objects.filter(pk__in=ids).update(created_at=at)
listcache.bump(user.pk)
ordered = Email.objects.filter(account=user).order_by("-created_at", "-id")
print(json.dumps(list(ordered.values_list("id", flat=True))))
"""

# Stores emails until stdin closes, as the services do (then bumps the account's lists): half
# with created_at now, half at an instant of the old ones (equal to some, between others), so
# they land before the walk's position and inside the range it still has to cover. Prints how
# many it stored.
INSERT = """
import json, random, sys, threading, time
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from mailer import listcache
from mailer.models import Email
user = get_user_model().objects.get(username="walker")
base = timezone.now().replace(microsecond=0) - timedelta(days=1)
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
print("ready", flush=True)
stored = 0
while not stop.is_set():
    # One transaction: created_at is set on insert (auto_now_add), and a reader must never see
    # the email at the newest end before it moves into the old range (that is a move, which a
    # walk may rightly see twice, not an insert).
    with transaction.atomic():
        email = Email.objects.create(account=user, from_email="a@example.com",
                                     to=["b@example.org"], subject=f"new {stored}", status="sent")
        if stored % 2:
            k = random.randrange(1250)
            at = base + timedelta(seconds=k * 10, microseconds=random.choice([0, (k % 3) * 250001]))
            Email.objects.filter(pk=email.pk).update(created_at=at)
    listcache.bump(user.pk)
    stored += 1
    time.sleep(0.002)
print(json.dumps({"stored": stored}), flush=True)
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    server = start_app_server(tmp_path_factory.mktemp("cursor-walk"), workers=2)
    server.tokens["walker"] = create_account(server, "walker")
    yield server
    server.stop()


def _shell(server, code: str, **options) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=server.env, stdout=subprocess.PIPE, text=True, **options,
    )  # fmt: skip


def test_a_cursor_walk_sees_every_old_email_once_while_emails_are_stored(live):
    seed = _shell(live, SEED)
    out, _ = seed.communicate(timeout=300)
    assert seed.returncode == 0
    old = json.loads(out.strip().splitlines()[-1])
    assert len(old) == OLD == len(set(old))

    inserter = _shell(live, INSERT, stdin=subprocess.PIPE)
    assert inserter.stdout is not None
    for line in inserter.stdout:  # after Django's shell says what it imported
        if line.strip() == "ready":
            break
    api = live.api(live.tokens["walker"])
    pages = []
    try:
        path = "/api/v1/emails?page_size=100&cursor="
        while path:
            response = api.get(path)
            assert response.status_code == 200, response
            pages.append(response.json())
            nxt = pages[-1]["next"]
            path = f"{urlsplit(nxt).path}?{urlsplit(nxt).query}" if nxt else None
    finally:
        out, _ = inserter.communicate("", timeout=60)
    assert inserter.returncode == 0
    stored = json.loads(out.strip().splitlines()[-1])["stored"]

    seen = [row["id"] for page in pages for row in page["results"]]
    assert len(seen) == len(set(seen)), "an email was repeated"
    old_seen = [i for i in seen if i in set(old)]
    assert old_seen == old, "every old email exactly once, in (created_at, id) order"
    for page in pages:
        keys = [(datetime.fromisoformat(r["created_at"]), r["id"]) for r in page["results"]]
        assert keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)
    # The walk really ran while emails were stored (half of them into the range it covered).
    assert stored >= 10, stored
    assert set(seen) - set(old) <= set(range(max(old) + 1, max(old) + stored + 1))
