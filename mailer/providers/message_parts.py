"""How the provider transports read a Django EmailMessage: its addresses (bare, IDNA-encoded),
its recipients once each, its From and Reply-To, its bodies, attachments, extra headers and our
metadata. One reading each, so the five HTTP APIs (and SMTP's and SES's envelopes) agree on what
a message says; what each provider then does with it (field names, which body types it takes,
when a part is inline) stays in its transport."""

from __future__ import annotations

import email.message
import email.policy
import functools
import secrets
from base64 import b64encode
from collections.abc import Iterable
from dataclasses import dataclass
from email.headerregistry import HeaderRegistry
from email.utils import parseaddr
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.message import DEFAULT_ATTACHMENT_MIME_TYPE
from django.utils.encoding import punycode

from .base import MessageRejected

# The MIME message ------------------------------------------------------------------------


class _HeaderClasses(HeaderRegistry):
    """The email package's header registry, making each header name's class once. The stock
    registry makes a new class (type()) for every header it is asked for: 27 per message of a
    send, about a quarter of building the message (bench item 1's profile). The classes it makes
    for a name are all alike and hold no state, so one per name serves every message."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


class _MimePolicy(email.policy.EmailPolicy):
    """email.policy.SMTP, but a short plain header is kept as its text and parsed only when read,
    once per distinct value. The stock policy parses every value it is given into a header object
    (address lists, encoded words) and folds it again from the parse tree when the message is
    written: more than half of building a message (bench item 1's profile).

    A value of printable ASCII (no CR, LF or other control character, no "=?" that could start
    an encoded word) whose line fits max_line_length is stored as it is and written as it is,
    which is what parsing and folding it would write (tests/providers/test_mime_policy.py holds
    the two to the same bytes). Reading it back (Django reads Content-Type a dozen times per
    message) parses it through a small cache shared by every message: header objects are
    immutable, and only such short values are cached, so the cache stays small. Anything else
    (non-ASCII, long, a datetime, a header object) goes the stock way."""

    def _plain(self, name: str, value: Any) -> bool:
        return (
            type(value) is str  # not a header object (a str too): it is parsed already
            and value.isascii()
            and value.isprintable()
            and "=?" not in value  # may hold encoded words, which the stock way decodes
            and len(name) + 2 + len(value) <= self.max_line_length
        )

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if self._plain(name, value):
            return (name, value)
        return super().header_store_parse(name, value)

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        if self._plain(name, value):
            return _parsed_plain(self, name, value)
        return super().header_fetch_parse(name, value)


@functools.lru_cache(maxsize=256)
def _parsed_plain(policy: _MimePolicy, name: str, value: str) -> Any:
    return email.policy.EmailPolicy.header_fetch_parse(policy, name, value)


# What every transport that writes a whole MIME message builds it with: RFC 5322 line endings
# (CRLF), plain headers kept as text (_MimePolicy) and header classes made once (_HeaderClasses).
MIME_POLICY = _MimePolicy(linesep="\r\n", header_factory=_HeaderClasses())


def mime_message(message: EmailMessage, policy: email.policy.Policy = MIME_POLICY):
    """The message as Django builds it, with each multipart part's boundary chosen here: 96
    random bits, short enough that its Content-Type stays a plain header (_MimePolicy). The
    email package's generator would otherwise make one when writing, and compile a regular
    expression per message to check the content does not hold it (~0.07 ms a message); content
    can't hold a random boundary nobody knew before it was written."""
    mime = message.message(policy=policy)
    for part in mime.walk():
        if part.is_multipart():
            part.set_boundary("=_" + secrets.token_urlsafe(12))
    return mime


# RFC 5322 specials: a display name holding any is quoted, so a comma can't split the list.
_SPECIALS = frozenset('()<>[]:;@\\,."')


# Addresses ---------------------------------------------------------------------------------


def idna_address(address: str) -> str:
    """A bare `local@domain` with its domain IDNA-encoded when it is not ASCII, as Django's own
    message() writes addresses in headers. The local part is left as it is. UnicodeError when
    there is no "@" or IDNA can't encode the domain."""
    local, at, domain = address.rpartition("@")
    if not at:
        raise UnicodeError("the address has no @")
    return f"{local}@{domain if domain.isascii() else punycode(domain)}"


def split_address(value: Any, label: str, *, one_line: bool = False) -> tuple[str, str]:
    """(display name, bare address with an IDNA domain) of an address as Django takes one
    ("Name <local@domain>" or "local@domain"). MessageRejected, naming the value by `label`,
    when it has no local part or no domain, or a domain IDNA can't encode; with `one_line`, also
    when the value holds a line break."""
    text = str(value)
    name, address = parseaddr(text)
    local, _, domain = address.rpartition("@")
    try:
        if local and domain and not (one_line and ("\r" in text or "\n" in text)):
            return name, idna_address(address)
    except UnicodeError:
        pass
    raise MessageRejected(f"{label} address {value!r} is not valid", code="invalid_address")


def display_address(value: Any, label: str, *, one_line: bool = False) -> str:
    """`Name <local@domain>` (or the bare address when there is no name), read by split_address:
    the name left as given, in UTF-8 for the API to encode, and quoted if it holds specials."""
    name, address = split_address(value, label, one_line=one_line)
    if not name:
        return address
    if _SPECIALS & set(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address}>"


def unique_addresses(labelled: Iterable[tuple[str, Any]]) -> list[tuple[str, str, str]]:
    """(label, display name, bare address) of each (label, value), read by split_address, in
    order; an address that comes again (compared case-blind) is left out, as the APIs refuse
    or deliver once anyway an address named twice. Each value is read, and may be refused,
    even when its address already came."""
    seen: set[str] = set()
    found = []
    for label, value in labelled:
        name, address = split_address(value, label)
        if address.lower() not in seen:
            seen.add(address.lower())
            found.append((label, name, address))
    return found


def envelope(message: EmailMessage) -> list[str]:
    """Every recipient (to, cc and bcc, as Django's recipients() lists them: empty values left
    out) once, as a bare address: the MIME names no Bcc, so for an API that takes raw MIME this
    list is the only place bcc recipients appear, and it delivers to exactly these."""
    labelled = (("recipient", value) for value in message.recipients())
    return [address for _, _, address in unique_addresses(labelled)]


def _given_header(message: EmailMessage, name: str, any_case: bool) -> tuple[bool, Any]:
    """Whether extra_headers sets `name` (in any letter case with `any_case`), and its value."""
    headers = message.extra_headers
    if any_case:
        headers = {key.lower(): value for key, value in headers.items()}
        name = name.lower()
    return name in headers, headers.get(name)


def sender(message: EmailMessage, *, any_case: bool = False) -> Any:
    """The From address: like Django's own message(), an explicit From header wins over
    from_email. Django matches the header's name exactly; `any_case` takes "from" too."""
    given, value = _given_header(message, "From", any_case)
    return value if given else message.from_email


def reply_to(message: EmailMessage, *, any_case: bool = False) -> list[Any]:
    """The Reply-To addresses: like Django's own message(), an explicit Reply-To header (one
    value) wins over the reply_to attribute. `any_case` as for sender()."""
    given, value = _given_header(message, "Reply-To", any_case)
    return [value] if given else list(message.reply_to)


# Bodies ------------------------------------------------------------------------------------


def message_charset(message: EmailMessage) -> str:
    """The charset Django's message() encodes this message's text in."""
    return message.encoding or settings.DEFAULT_CHARSET


def text(value: str | bytes, charset: str) -> str:
    """A body as text: bytes decoded with the message's charset, anything else as str()."""
    return value.decode(charset) if isinstance(value, bytes) else str(value)


def bodies(message: EmailMessage) -> list[tuple[Any, str]]:
    """(content, mimetype) of the main body (text/<content_subtype>), then of each alternative
    (EmailMultiAlternatives), empty ones left out. The content is as given: str or bytes, for
    text() to read once the provider has taken its type."""
    parts = [(message.body, f"text/{message.content_subtype}")]
    parts += [(content, mimetype) for content, mimetype in getattr(message, "alternatives", ())]
    return [(content, mimetype) for content, mimetype in parts if content]


# Attachments -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    """One attachment, from a (filename, content, mimetype) tuple or a MIME part. Only a MIME
    part has a Content-ID (without its <>) or a Content-Disposition type: when that makes it
    inline is the provider's call."""

    filename: str
    content: bytes
    mimetype: str
    content_id: str = ""
    disposition: str | None = None

    @property
    def base64(self) -> str:
        return b64encode(self.content).decode("ascii")


def attachments(message: EmailMessage, charset: str, provider: str) -> list[Attachment]:
    """The message's attachments, in order. A missing filename reads "attachment", a missing
    mimetype Django's default; a MIME part must be a leaf: a multipart one is refused, naming
    `provider` (an API that takes files takes no nested parts)."""
    found = []
    for attachment in message.attachments:
        if isinstance(attachment, email.message.Message):
            found.append(_mime_part(attachment, provider))
            continue
        filename, content, mimetype = attachment
        found.append(
            Attachment(
                filename or "attachment",
                _attachment_bytes(content, charset),
                mimetype or DEFAULT_ATTACHMENT_MIME_TYPE,
            )
        )
    return found


def _attachment_bytes(content: Any, charset: str) -> bytes:
    if isinstance(content, (bytes, bytearray, memoryview)):
        return bytes(content)
    if isinstance(content, str):
        return content.encode(charset)
    if isinstance(content, EmailMessage):  # message/rfc822 given as a Django message
        return content.message().as_bytes()
    if isinstance(content, email.message.Message):
        return content.as_bytes()
    raise MessageRejected(f"attachment content of type {type(content).__name__} can't be sent")


def _mime_part(part: email.message.Message, provider: str) -> Attachment:
    """An attachment given as a MIMEPart (or legacy MIMEBase): its decoded payload."""
    payload = None if part.is_multipart() else part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        raise MessageRejected(
            f"a {part.get_content_type()} attachment part can't be sent through {provider}",
            code="attachment",
        )
    return Attachment(
        part.get_filename() or "attachment",
        payload,
        part.get_content_type(),
        content_id=str(part.get("Content-ID") or "").strip().strip("<>"),
        disposition=part.get_content_disposition(),
    )


# Headers and metadata ----------------------------------------------------------------------


def custom_headers(message: EmailMessage, reserved: frozenset[str]) -> list[tuple[str, str]]:
    """(name, value) of each extra header but those `reserved` (lower-case names the API sets
    from its own fields), the value as text (APIs want strings, Django allows any). A line
    break in a value is refused: a JSON API would pass it on into the header."""
    headers = []
    for name, value in message.extra_headers.items():
        if name.lower() in reserved:
            continue
        line = str(value)
        if "\r" in line or "\n" in line:
            raise MessageRejected(f"header {name} contains a line break", code="header")
        headers.append((str(name), line))
    return headers


def metadata(message: EmailMessage) -> Any:
    """Our metadata (compose.py sets message.metadata = {"email_id": ...}: a provider's events
    carry it back, which is how webhooks find the exact email); {} for site mail, which has
    none."""
    return getattr(message, "metadata", None) or {}
