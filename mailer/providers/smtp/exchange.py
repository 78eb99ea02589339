"""One SMTP mail transaction on an open connection, and what the server's replies mean.

The envelope (MAIL FROM, each RCPT TO, DATA) goes in one write when the server offers
PIPELINING (RFC 2920; Gmail, Postfix, Exchange and SES all do), its replies then read in order:
two round trips a message instead of three plus one per recipient, which is most of a send's
time to a distant server. Without it the commands go one at a time. Either way the transaction
is all or nothing: a recipient refused fails the attempt before any content is sent. When DATA
was already accepted in the pipeline (another recipient was taken), the connection is closed
instead of sending anything: a server discards a transaction whose content never ended, and the
next message opens a new connection.

Failures are classified by stage: nothing of the message was sent before the content, so a
network error there is an outage (ProviderUnavailable), or, on a reused connection at its first
reply, a connection the server had closed while idle (`Stale`: the caller retries on a new
one); once the content is sent, only the server knows whether it queued it (AmbiguousDelivery).
"""

from __future__ import annotations

import re
import smtplib
from collections.abc import Callable

from ..base import (
    AmbiguousDelivery,
    MessageRejected,
    ProviderAuthError,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
)
from ..net import sanitize

# Replies to RCPT that mean "this recipient does not exist or is not allowed": the message is
# wrong, not the server. 554 is deliberately absent: servers use it for "relay denied" and
# "your IP is blocked", which another provider may well not suffer from.
_RECIPIENT_REJECTED = {501, 550, 551, 553}
_AUTH_CODES = {530, 534, 535, 538}

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
_LEADING_DOT = re.compile(rb"(?m)^\.")

Reply = tuple[int, bytes]


def reply_text(resp: bytes | str) -> str:
    text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else str(resp)
    return sanitize(text)


def smtp_error(stage: str, code: int, resp: bytes | str) -> ProviderError:
    """Classify an SMTP reply that is not a success at a given stage of the transaction."""
    reply = reply_text(resp)
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


def network_code(exc: BaseException) -> str:
    # smtplib reports a read timeout as SMTPServerDisconnected("... timed out").
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return "timeout"
    return "disconnected"


class Stale(Exception):
    """A reused connection turned out to be closed before anything of this message was sent."""


class Transaction:
    """Send one message on `conn`. `describe`: the provider, as errors name it; `drop`: close
    the caller's connection (it is not to be used again)."""

    def __init__(self, conn: smtplib.SMTP, describe: str, drop: Callable[[], None]) -> None:
        self.conn, self.describe, self._drop_conn = conn, describe, drop
        self.answered = False  # the server answered a command of this transaction
        self.dropped = False  # the connection was closed: nothing more is sent on it

    def send(self, sender: str, recipients: list[str], raw: bytes, *, reused: bool) -> None:
        pipelined = self.conn.has_extn("pipelining")
        try:
            if pipelined:
                mail, rcpts, data = self._pipelined(sender, recipients)
            else:
                mail, rcpts, data = self._stepwise(sender, recipients)
        except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
            self.drop()
            if reused and not self.answered:
                raise Stale from exc
            raise ProviderUnavailable(
                f"{self.describe} dropped the connection before the message was sent",
                code="disconnected",
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self.drop()
            raise ProviderUnavailable(
                f"{self.describe} failed before the message was sent: {exc}",
                code=network_code(exc),
            ) from exc
        self._check_envelope(mail, rcpts, data)
        self._content(raw)

    def _pipelined(self, sender: str, recipients: list[str]):
        lines = [f"mail from:{smtplib.quoteaddr(sender)}\r\n"]
        lines += [f"rcpt to:{smtplib.quoteaddr(r)}\r\n" for r in recipients]
        self.conn.send("".join(lines) + "data\r\n")
        mail = self.conn.getreply()
        self.answered = True
        rcpts: list = []
        try:
            for recipient in recipients:
                rcpts.append((recipient, *self.conn.getreply()))
            return mail, rcpts, self.conn.getreply()
        except (smtplib.SMTPException, OSError):
            # A server may close after refusing (421): the refusal read is the answer.
            if mail[0] == 250 and all(code in (250, 251) for _, code, _ in rcpts):
                raise
            self.drop()
            return mail, rcpts, None

    def _stepwise(self, sender: str, recipients: list[str]):
        mail = self.conn.mail(sender)
        self.answered = True
        if mail[0] != 250:
            return mail, [], None
        rcpts = []
        for recipient in recipients:
            rcpts.append((recipient, *self.conn.rcpt(recipient)))
            if rcpts[-1][1] not in (250, 251):
                return mail, rcpts, None
        self.conn.putcmd("data")
        return mail, rcpts, self.conn.getreply()

    def _check_envelope(self, mail: Reply, rcpts: list, data: Reply | None) -> None:
        """Raise the first refusal, leaving the connection ready for the next message: reset,
        or closed when DATA was accepted (the content phase can't be left otherwise)."""
        error = None
        if mail[0] != 250:
            error = smtp_error("MAIL FROM", *mail)
        else:
            refused = next(((r, c, t) for r, c, t in rcpts if c not in (250, 251)), None)
            if refused is not None:
                error = smtp_error("RCPT", refused[1], refused[2])
                error.message = f"{error.message} (recipient {refused[0]})"
                error.args = (error.message,)
            elif data is not None and data[0] != 354:
                error = smtp_error("DATA", *data)
        if error is None:
            return
        if data is not None and data[0] == 354:
            self.drop()
        else:
            self._reset()
        raise error

    def _content(self, raw: bytes) -> None:
        """The message (dots doubled at line starts, as smtplib's data() does), its end, and
        the server's answer."""
        content = _LEADING_DOT.sub(b"..", raw)
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        try:
            self.conn.send(content + b".\r\n")
            code, resp = self.conn.getreply()
        except (smtplib.SMTPException, OSError) as exc:
            # The message may have been transmitted in full before the connection broke:
            # only the provider knows whether it was queued.
            self.drop()
            raise AmbiguousDelivery(
                f"{self.describe} gave no answer after the message was sent: {exc}",
                code=network_code(exc),
            ) from exc
        if code != 250:
            self._reset()
            raise smtp_error("DATA", code, resp)

    def drop(self) -> None:
        self.dropped = True
        self._drop_conn()

    def _reset(self) -> None:
        if self.dropped:  # e.g. the server closed after refusing: nothing to reset
            return
        try:
            self.conn.rset()
        except (smtplib.SMTPException, OSError):
            self.drop()
