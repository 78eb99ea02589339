"""`make run` end to end: bin/run-local on free ports in a temporary place, as a person runs it."""

from __future__ import annotations

import json
import urllib.request

from tests.live import process_group_alive, running_app


def test_make_run_serves_with_a_working_demo_account(tmp_path):
    with running_app(tmp_path) as app:
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
    # Ctrl-C stopped everything it started: nothing of its process group is left.
    assert not process_group_alive(app.process.pid), "make run left processes behind"
