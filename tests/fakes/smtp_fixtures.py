"""pytest fixtures that start the SMTP stand-ins of harness/smtp.py and stop them after."""

from __future__ import annotations

import ssl

import pytest

from harness.ports import free_port
from harness.smtp import Blackhole, ScriptedHandler, SmtpServer, make_self_signed_cert


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """(cert_path, key_path) of a self-signed certificate for 127.0.0.1, made for this run."""
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def server_tls_context(tls_files):
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def smtp_server():
    """smtp_server(handler=None, starttls=ctx, implicit_tls=ctx, credentials=(u, p)) -> started
    SmtpServer; every server started is stopped at the end of the test."""
    started: list[SmtpServer] = []

    def start(handler: ScriptedHandler | None = None, **options) -> SmtpServer:
        server = SmtpServer(handler, **options).start()
        started.append(server)
        return server

    yield start
    # Pooled providers keep connections open; close them first, or a TLS server waits for them.
    from mailer.delivery.pool import provider_pool

    provider_pool.clear()
    for server in started:
        server.stop()


@pytest.fixture
def smtp_sink(smtp_server) -> SmtpServer:
    """A plain SMTP server on loopback that accepts and records everything."""
    return smtp_server()


@pytest.fixture
def blackhole():
    hole = Blackhole().start()
    yield hole
    hole.stop()


@pytest.fixture
def closed_port() -> int:
    """A loopback port nobody listens on: connecting is refused at once."""
    return free_port()
