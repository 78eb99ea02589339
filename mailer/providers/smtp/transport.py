"""SMTP transport (any server; Gmail is a preset): one reused connection per provider instance."""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from django.core.mail import EmailMessage
from django.core.mail.utils import DNS_NAME

from ..base import (
    AmbiguousDelivery,
    ConfigurationError,
    MessageRejected,
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
)
from ..message_parts import idna_address, mime_message
from ..net import BlockedHost, Deadline, connect, enforced, sanitize, shutdown
from . import SECURITY

SECURITY_MODES = tuple(value for value, _ in SECURITY)

# Replies to RCPT that mean "this recipient does not exist or is not allowed": the message is
# wrong, not the server. 554 is deliberately absent: servers use it for "relay denied" and
# "your IP is blocked", which another provider may well not suffer from.
_RECIPIENT_REJECTED = {501, 550, 551, 553}
_AUTH_CODES = {530, 534, 535, 538}


def _reply_text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return sanitize(text)


# A transient reply is a throttle (a pause, not an outage) when its text names a rate or a limit:
# "4.7.0 Too many messages, slow down", "454 Throttling failure: Maximum sending rate exceeded",
# "421 4.7.28 ... unusual rate", "451 Ratelimit exceeded". Deliberately not "try again later" or
# "busy": servers say that when they are going down, which is an outage. A daily quota won't
# clear within a pause, so it stays an outage too.
_THROTTLE_CODES = {421, 451, 454}
_THROTTLE_TEXT = re.compile(
    r"\brate\b|rate.?limit|too many|throttl|\blimit(s|ed|ing)?\b|slow down", re.IGNORECASE
)
_QUOTA_TEXT = re.compile(r"\b(daily|quota)\b", re.IGNORECASE)


def _smtp_error(stage: str, code: int, resp: bytes | str) -> ProviderError:
    """Classify an SMTP reply that is not a success at a given stage of the transaction."""
    reply = _reply_text(resp)
    text = f"SMTP {code} at {stage}: {reply}".strip()
    if code in _AUTH_CODES:
        return ProviderAuthError(text, code=str(code))
    if code in _THROTTLE_CODES and _THROTTLE_TEXT.search(reply) and not _QUOTA_TEXT.search(reply):
        return ProviderThrottled(text, code=str(code))
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
            raise _smtp_error("connect", exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPServerDisconnected as exc:
            conn.close()
            raise ProviderUnavailable(
                f"{self.describe()} gave no greeting: {exc}", code=_network_code(exc)
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
            self._transaction(self._client, sender, recipients, raw, reused=reused)
        except _Stale:
            self._client = self._connect(deadline)
            self._transaction(self._client, sender, recipients, raw, reused=False)
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
