"""SMTP transport (any server; Gmail is a preset): one reused connection per provider instance."""

from __future__ import annotations

import email.policy
import smtplib
import socket
import ssl
import threading
from email.utils import parseaddr
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.utils import DNS_NAME

from .base import (
    AmbiguousDelivery,
    ConfigurationError,
    MessageRejected,
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderUnavailable,
)

SECURITY_MODES = ("starttls", "ssl", "none")
GMAIL_PRESET = {"host": "smtp.gmail.com", "port": 587, "security": "starttls"}

# Replies to RCPT that mean "this recipient does not exist or is not allowed": the message is
# wrong, not the server. 554 is deliberately absent: servers use it for "relay denied" and
# "your IP is blocked", which another provider may well not suffer from.
_RECIPIENT_REJECTED = {501, 550, 551, 553}
_AUTH_CODES = {530, 534, 535, 538}


def _reply_text(resp: bytes | str) -> str:
    if isinstance(resp, bytes):
        return resp.decode("utf-8", "replace")
    return str(resp)


def _smtp_error(stage: str, code: int, resp: bytes | str) -> ProviderError:
    """Classify an SMTP reply that is not a success at a given stage of the transaction."""
    text = f"SMTP {code} at {stage}: {_reply_text(resp)}".strip()
    if code in _AUTH_CODES:
        return ProviderAuthError(text, code=str(code))
    if stage == "RCPT" and code in _RECIPIENT_REJECTED:
        return MessageRejected(text, code=str(code))
    if stage == "DATA" and code == 552:
        return MessageRejected(text, code=str(code))
    return ProviderUnavailable(text, code=str(code))


def _network_code(exc: BaseException) -> str:
    # smtplib reports a read timeout as SMTPServerDisconnected("... timed out").
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return "timeout"
    return "disconnected"


class _Stale(Exception):
    """A reused connection turned out to be closed before anything of this message was sent."""


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
        self._connection: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"smtp {self.host}:{self.port}"

    # Connection handling -------------------------------------------------------------------

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.tls_ca_file)

    def _connect(self) -> smtplib.SMTP:
        host = self.require("host", self.host)
        if self.username and not self.password:
            self.require("password", self.password)
        try:
            if self.security == "ssl":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    host,
                    self.port,
                    local_hostname=DNS_NAME.get_fqdn(),
                    timeout=self.connect_timeout,
                    context=self._tls_context(),
                )
            else:
                conn = smtplib.SMTP(
                    host,
                    self.port,
                    local_hostname=DNS_NAME.get_fqdn(),
                    timeout=self.connect_timeout,
                )
        except smtplib.SMTPConnectError as exc:
            raise _smtp_error("connect", exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPServerDisconnected as exc:
            raise ProviderUnavailable(
                f"{self.describe()} gave no greeting: {exc}", code=_network_code(exc)
            ) from exc
        except TimeoutError as exc:
            raise ProviderUnavailable(
                f"timed out connecting to {self.describe()}", code="timeout"
            ) from exc
        except OSError as exc:  # refused, reset, DNS failure, TLS handshake
            raise ProviderUnavailable(
                f"cannot connect to {self.describe()}: {exc}", code="connect"
            ) from exc
        try:
            conn.sock.settimeout(self.timeout)
            conn.ehlo()
            if self.security == "starttls":
                conn.starttls(context=self._tls_context())
                conn.ehlo()
            if self.username:
                self._login(conn)
        except BaseException as exc:
            self._close(conn)
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
                f"SMTP {exc.smtp_code} login refused: {_reply_text(exc.smtp_error)}",
                code=str(exc.smtp_code),
            )
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return ConfigurationError(f"{self.describe()}: {exc}", setting="security")
        if isinstance(exc, smtplib.SMTPResponseException):
            return _smtp_error("session setup", exc.smtp_code, exc.smtp_error)
        if isinstance(exc, (TimeoutError, socket.timeout)):
            return ProviderUnavailable(f"{self.describe()} timed out during setup", code="timeout")
        if isinstance(exc, (smtplib.SMTPException, OSError)):
            return ProviderUnavailable(
                f"{self.describe()} failed during setup: {exc}", code="connect"
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
            if self._connection is not None:
                return False
            self._connection = self._connect()
            return True

    def close(self) -> None:
        with self._lock:
            self._close(self._connection)
            self._connection = None

    # Sending -------------------------------------------------------------------------------

    def send(self, message: EmailMessage) -> str:
        try:
            mime = message.message(policy=email.policy.SMTP)
            raw = mime.as_bytes()
        except (ValueError, UnicodeError) as exc:
            raise MessageRejected(f"message could not be encoded: {exc}", code="encoding") from exc
        sender = parseaddr(message.from_email)[1]
        recipients = [parseaddr(r)[1] for r in message.recipients()]
        message_id = str(mime["Message-ID"] or "")
        with self._lock:
            reused = self._connection is not None
            if not reused:
                self._connection = self._connect()
            try:
                self._transaction(self._connection, sender, recipients, raw, reused=reused)
            except _Stale:
                self._close(self._connection)
                self._connection = self._connect()
                self._transaction(self._connection, sender, recipients, raw, reused=False)
        return message_id

    def _drop(self) -> None:
        conn, self._connection = self._connection, None
        if conn is not None:
            conn.close()

    def _transaction(
        self, conn: smtplib.SMTP, sender: str, recipients: list[str], raw: bytes, *, reused: bool
    ) -> None:
        try:
            code, resp = conn.mail(sender)
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            self._drop()
            if reused:
                raise _Stale from exc
            raise ProviderUnavailable(
                f"{self.describe()} dropped the connection at MAIL FROM", code="disconnected"
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise ProviderUnavailable(
                f"{self.describe()} failed at MAIL FROM: {exc}", code=_network_code(exc)
            ) from exc
        if code != 250:
            self._reset(conn)
            raise _smtp_error("MAIL FROM", code, resp)
        try:
            replies = [(recipient, *conn.rcpt(recipient)) for recipient in recipients]
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise ProviderUnavailable(
                f"{self.describe()} failed at RCPT TO: {exc}", code="disconnected"
            ) from exc
        for recipient, code, resp in replies:
            if code not in (250, 251):
                self._reset(conn)
                error = _smtp_error("RCPT", code, resp)
                error.message = f"{error.message} (recipient {recipient})"
                error.args = (error.message,)
                raise error
        try:
            code, resp = conn.data(raw)
        except smtplib.SMTPDataError as exc:  # DATA itself refused: nothing was transmitted
            self._reset(conn)
            raise _smtp_error("DATA", exc.smtp_code, exc.smtp_error) from exc
        except (smtplib.SMTPException, OSError) as exc:
            # The message may have been transmitted in full before the connection broke:
            # only the provider knows whether it was queued.
            self._drop()
            raise AmbiguousDelivery(
                f"{self.describe()} gave no answer after the message was sent: {exc}",
                code=_network_code(exc),
            ) from exc
        if code != 250:
            self._reset(conn)
            raise _smtp_error("DATA", code, resp)

    def _reset(self, conn: smtplib.SMTP) -> None:
        try:
            conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()
