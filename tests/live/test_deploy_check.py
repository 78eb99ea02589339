"""Production settings pass `manage.py check --deploy` without a single warning."""

from __future__ import annotations

import secrets
import subprocess
import sys

from harness import ROOT
from tests.appserver import production_env


def deploy_check(tmp_path, **overrides: str) -> subprocess.CompletedProcess:
    env = production_env(
        tmp_path,
        SECRET_KEY=secrets.token_urlsafe(64),  # what an operator generates: long and random
        ALLOWED_HOSTS="mail.example.com",
        SECURE_SSL_REDIRECT="true",
        MAIL_PROVIDER_URLS="smtp://smtp.example.com:587",
    )
    for name in ("DEBUG", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SECURE_HSTS_SECONDS"):
        env.pop(name, None)  # production defaults, not the test server's relaxations
    env.update(overrides)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_settings(tmp_path):
    result = deploy_check(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNINGS" not in result.stderr + result.stdout


def test_check_deploy_catches_debug_left_on(tmp_path):
    """The check is not vacuous: the same run with DEBUG on fails."""
    result = deploy_check(tmp_path, DEBUG="true")
    assert result.returncode != 0
    assert "DEBUG" in result.stderr + result.stdout
