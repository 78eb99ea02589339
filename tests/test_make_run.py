"""`make run` end to end: bin/run-local on free ports in a temporary place, as a person runs it."""

from __future__ import annotations

import json
import time
import urllib.request

from tests.live import process_group_alive, processes_of, running_app


def _api_get(app, path: str) -> dict:
    request = urllib.request.Request(app.url + path)
    request.add_header("Authorization", f"Bearer {app.token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_make_run_serves_with_a_working_demo_account(tmp_path):
    # A short sweep interval, as a person may set it, so the sweep below acts within the test.
    with running_app(tmp_path, SWEEP_INTERVAL_SECONDS="0.5") as app:
        assert app.login.split()[2] == "demo"

        with urllib.request.urlopen(f"{app.url}/healthz", timeout=10) as response:
            assert response.status == 200
            assert json.loads(response.read()) == {"status": "ok", "database": "ok", "cache": "ok"}

        env_file = tmp_path / ".env"
        assert env_file.stat().st_mode & 0o777 == 0o600
        assert "SECRET_KEY=" in env_file.read_text()

        # The printed token authenticates the demo account, whose provider is the local sink.
        out = app.manage(
            "from mailer.services import token_authenticate, email_send\n"
            "from mailer.validation import OutgoingEmail\n"
            f"token = token_authenticate(raw={app.token!r})\n"
            "result = email_send(account=token.account, outgoing=OutgoingEmail("
            "from_email='demo@example.com', to=['friend@example.org'], subject='From make run',"
            " text='It works.'))\n"
            "print(token.account.username, result.email.status)\n"
        )
        assert out.strip().splitlines()[-1].split() == ["demo", "sent"]
        app.wait_for("'From make run'")

        # make run's outbox sweep takes back a send whose process died (stored `sending` and
        # claimed, its lease run out, nothing recorded) and delivers it.
        sweepers = [pid for pid in processes_of(app.env["ENV_FILE"]) if _is_sweeper(pid)]
        assert len(sweepers) == 1, "make run started one sweep loop"
        out = app.manage(
            "from datetime import timedelta\n"
            "from django.utils import timezone\n"
            "from mailer.models import Email\n"
            "from mailer.services import token_authenticate, email_create\n"
            "from mailer.validation import OutgoingEmail\n"
            f"token = token_authenticate(raw={app.token!r})\n"
            "email, _ = email_create(account=token.account, outgoing=OutgoingEmail("
            "from_email='demo@example.com', to=['friend@example.org'], subject='Left sending',"
            " text='Its worker died.'))\n"
            "Email.objects.filter(pk=email.pk).update("
            "lease_expires_at=timezone.now() - timedelta(seconds=1))\n"
            "print(email.pk)\n"
        )
        email_id = int(out.strip().splitlines()[-1])
        app.wait_for("'Left sending'")
        app.wait_for("released 1, enqueued 0, delivered 1")
        deadline = time.monotonic() + 30
        while (email := _api_get(app, f"/api/v1/emails/{email_id}"))["status"] != "sent":
            assert time.monotonic() < deadline, email
            time.sleep(0.2)
        assert email["possible_duplicate"], "its first try may have reached the provider"
    # Ctrl-C stopped everything it started: nothing of its process group is left.
    assert not process_group_alive(app.process.pid), "make run left processes behind"


def _is_sweeper(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().split(b"\0")[1:4] == [b"manage.py", b"deliver_pending", b"--loop"]
    except OSError:
        return False
