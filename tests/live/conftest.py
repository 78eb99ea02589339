"""Fixtures of the live tests: an SMTP sink of the test's own."""

from __future__ import annotations

import pytest

from harness.smtp import SmtpServer


@pytest.fixture
def sink():
    """A real SMTP server (aiosmtpd) that accepts and keeps every message, for one test."""
    server = SmtpServer().start()
    yield server
    server.stop()
