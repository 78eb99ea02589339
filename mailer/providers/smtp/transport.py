"""SMTP transport (any server; Gmail is a preset): one reused connection per provider instance."""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.utils import DNS_NAME

from ..base import (
    ConfigurationError,
    MessageRejected,
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
)
from ..message_parts import idna_address, mime_message
from ..net import BlockedHost, Deadline, connect, enforced, sanitize, shutdown
from . import SECURITY
from .exchange import Stale, Transaction, network_code, reply_text, smtp_error

SECURITY_MODES = tuple(value for value, _ in SECURITY)


def _envelope_address(value: str) -> str:
    """The bare address for MAIL FROM / RCPT TO, its domain IDNA-encoded (as Django's message()
    encodes the headers). A local part that is not ASCII would need SMTPUTF8: refused here, so
    it can't fail half-way through a transaction."""
    address = parseaddr(value)[1] or value
    local, at, _ = address.rpartition("@")
    try:
        if not at or not local.isascii():
            raise UnicodeError("the part before @ must be ASCII")
        return idna_address(address)
    except UnicodeError as exc:
        raise MessageRejected(
            f"address {value!r} can't be sent over SMTP: {exc}", code="encoding"
        ) from exc


@dataclass(frozen=True)
class _Envelope:
    sender: str
    recipients: list[str]
    raw: bytes
    message_id: str


class _PinnedSMTP(smtplib.SMTP):
    """smtplib.SMTP whose socket goes to a checked address (mailer.providers.net.connect)."""

    allow_private = False
    deadline: Deadline | None = None

    def _get_socket(self, host, port, timeout):
        return connect(
            host, port, timeout=timeout, allow_private=self.allow_private, deadline=self.deadline
        )


class _PinnedSMTP_SSL(smtplib.SMTP_SSL, _PinnedSMTP):
    """SMTP over TLS from the first byte; SMTP_SSL wraps the socket _PinnedSMTP made."""


class SmtpProvider(Provider):
    kind = "smtp"

    def __init__(
        self,
        *,
        host: str | None = None,
        port: int | str | None = None,
        security: str = "starttls",
        username: str = "",
        password: str = "",
        tls_ca_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if security not in SECURITY_MODES:
            raise ConfigurationError(
                f"smtp setting 'security' must be one of {', '.join(SECURITY_MODES)}, "
                f"not {security!r}",
                setting="security",
            )
        self.host = host
        self.security = security
        self.port = int(port) if port not in (None, "") else (465 if security == "ssl" else 587)
        self.username = username
        self.password = password
        self.tls_ca_file = tls_ca_file
        self._active: smtplib.SMTP | None = None  # the connection the watchdog may cut

    def describe(self) -> str:
        return f"smtp {self.host}:{self.port}"

    # Connection handling -------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.tls_ca_file)

    def _connect(self, deadline: Deadline) -> smtplib.SMTP:
        host = self.require("host", self.host)
        if self.username and not self.password:
            self.require("password", self.password)
        # Built unconnected, so the deadline's watchdog can reach its socket from the first byte
        # of the greeting: a server that trickles an endless "220-" greeting is cut off.
        if self.security == "ssl":
            conn: smtplib.SMTP = _PinnedSMTP_SSL(
                local_hostname=DNS_NAME.get_fqdn(),
                timeout=self.connect_timeout,
                context=self._tls_context(),
            )
        else:
            conn = _PinnedSMTP(local_hostname=DNS_NAME.get_fqdn(), timeout=self.connect_timeout)
        conn._host = host  # the name TLS checks the certificate against (STARTTLS, SSL)
        conn.allow_private = self.allow_private_hosts
        conn.deadline = deadline
        self._active = conn
        try:
            conn.connect(host, self.port)
        except BlockedHost as exc:
            raise ConfigurationError(f"{self.describe()}: {exc}", setting="host") from exc
        except smtplib.SMTPConnectError as exc:
            raise smtp_error("connect", exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPServerDisconnected as exc:
            conn.close()
            raise ProviderUnavailable(
                f"{self.describe()} gave no greeting: {exc}", code=network_code(exc)
            ) from exc
        except TimeoutError as exc:
            conn.close()
            raise ProviderUnavailable(
                f"timed out connecting to {self.describe()}", code="timeout"
            ) from exc
        except OSError as exc:  # refused, reset, DNS failure, TLS handshake
            conn.close()
            raise ProviderUnavailable(
                f"cannot connect to {self.describe()}: {sanitize(str(exc))}", code="connect"
            ) from exc
        try:
            conn.sock.settimeout(deadline.cap(self.timeout))
            conn.ehlo()
            if self.security == "starttls":
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if self.username:
                self._login(conn)
        except BaseException as exc:
            conn.close()
            raise self._session_error(exc) from exc
        return conn

    def _login(self, conn: smtplib.SMTP) -> None:
        # One mechanism, one answer: smtplib.login() would retry other mechanisms after a 535,
        # which some servers answer by hanging. PLAIN is what providers (Gmail included) offer.
        if "plain" in conn.esmtp_features.get("auth", "").lower().split():
            conn.user, conn.password = self.username, self.password
            conn.auth("PLAIN", conn.auth_plain)  # raises SMTPAuthenticationError on 535
        else:
            conn.login(self.username, self.password)

    def _session_error(self, exc: BaseException) -> ProviderError:
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return ProviderAuthError(
                f"SMTP {exc.smtp_code} login refused: {reply_text(exc.smtp_error)}",
                code=str(exc.smtp_code),
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return ConfigurationError(f"{self.describe()}: {exc}", setting="security")
        if isinstance(exc, smtplib.SMTPResponseException):
            return smtp_error("session setup", exc.smtp_code, exc.smtp_error)
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return ProviderUnavailable(f"{self.describe()} timed out during setup", code="timeout")
        if isinstance(exc, (smtplib.SMTPException, OSError)):
            return ProviderUnavailable(
                f"{self.describe()} failed during setup: {sanitize(str(exc))}", code="connect"
            )
        if isinstance(exc, Exception):
            return ProviderUnavailable(
                f"{self.describe()}: {type(exc).__name__}: {exc}", code="unexpected_error"
            )
        raise exc  # KeyboardInterrupt, SystemExit: not ours to classify

    @staticmethod
    def _close(conn: smtplib.SMTP | None) -> None:
        if conn is None:
            return
        try:
            conn.quit()
        except (smtplib.SMTPException, OSError):
            conn.close()

    def open(self) -> bool:
        with self._lock:
            if self._client is not None:
                return False
            self._client = self._connect(Deadline(self.attempt_deadline))
            return True

    def close_client(self, client: smtplib.SMTP) -> None:
        self._close(client)

    # Sending -------------------------------------------------------------------------------

    def prepare(self, message: EmailMessage) -> _Envelope:
        mime = mime_message(message)
        return _Envelope(
            sender=_envelope_address(message.from_email),
            recipients=[_envelope_address(r) for r in message.recipients()],
            raw=mime.as_bytes(),
            message_id=str(mime["Message-ID"] or ""),
        )

    def transmit(self, prepared: _Envelope, deadline: Deadline) -> str:
        sender, recipients, raw = prepared.sender, prepared.recipients, prepared.raw
        # The connection is this provider's client, held under the base class's lock for a
        # whole transaction (it is built with the attempt's deadline, so not by client()).
        # One message at a time per connection; waiting for it counts against the deadline.
        if not self._lock.acquire(timeout=deadline.remaining()):
            raise ProviderUnavailable(
                f"{self.describe()} was busy with other messages until the deadline", code="busy"
            )
        try:
            with enforced(deadline, self._abort):
                self._send_locked(sender, recipients, raw, deadline)
        finally:
            self._active = None
            self._lock.release()
        return prepared.message_id

    def _send_locked(
        self, sender: str, recipients: list[str], raw: bytes, deadline: Deadline
    ) -> None:
        reused = self._client is not None
        if reused:
            self._active = self._client
            self._client.sock.settimeout(deadline.cap(self.timeout))
        else:
            self._client = self._connect(deadline)
        try:
            Transaction(self._client, self.describe(), self._drop).send(
                sender, recipients, raw, reused=reused
            )
        except Stale:
            self._client = self._connect(deadline)
            Transaction(self._client, self.describe(), self._drop).send(
                sender, recipients, raw, reused=False
            )
        except ProviderError:
            raise
        except BaseException:
            # Whatever went wrong mid-transaction, the next message must not inherit it.
            self._drop()
            raise

    def _abort(self) -> None:
        """Called by the deadline's watchdog thread: cut the connection in use."""
        conn = self._active
        if conn is not None:
            shutdown(getattr(conn, "sock", None))

    def _drop(self) -> None:
        conn, self._client = self._client, None
        if conn is not None:
            conn.close()
