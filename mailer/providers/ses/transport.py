"""Amazon SES transport: raw MIME through the SESv2 SendEmail API, one boto3 client per instance.

boto3 builds and signs each request; a before-send hook then sends it over mailer.providers.net's
HTTP client (checked address, attempt deadline, no redirects) instead of botocore's urllib3."""

from __future__ import annotations

import contextvars
import re
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.awsrequest import AWSResponse, HeadersDict
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from django.core.mail import EmailMessage

from ..base import (
    ConfigurationError,
    MessageRejected,
    Provider,
    ProviderAuthError,
    ProviderError,
    ProviderThrottled,
    ProviderUnavailable,
)
from ..http import retry_after_seconds
from ..httpclient import HttpClient
from ..message_parts import idna_address, mime_message
from ..net import Deadline, sanitize

# What SES takes as a message tag's value; an id it can't carry is left out rather than altered,
# since an altered id would match no email.
_TAG_VALUE = re.compile(r"[A-Za-z0-9_.@-]{1,256}")

# The deadline of the attempt in progress in this thread, for the before-send hook.
_deadline: contextvars.ContextVar[Deadline] = contextvars.ContextVar("ses_attempt_deadline")

# The keys are wrong, expired or not allowed to send: every message would fail the same way.
_AUTH_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "ExpiredToken",
    "ExpiredTokenException",
    "IncompleteSignature",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "NotAuthorized",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    # Account-wide states that last hours or days (AWS review, or the owner paused sending):
    # unlike throttling they won't clear before the circuit's probe, so opening the circuit at
    # once spares every following message a doomed round trip.
    "AccountSuspendedException",
    "SendingPausedException",
}
# The request itself is malformed for SES; the same message would be refused again.
_REJECTED_CODES = {"BadRequestException", "InvalidParameterValue", "ValidationException"}
# SES asks us to slow down: a pause, not an outage (SESv1's Query API says "Throttling", SESv2
# "TooManyRequestsException", both "Maximum sending rate exceeded."). SESv1 also says Throttling
# for "Daily message quota exceeded.": that won't clear within a pause, so it stays an outage.
_THROTTLE_CODES = {"Throttling", "ThrottlingException", "TooManyRequestsException"}
_QUOTA = re.compile(r"\b(daily|quota)\b", re.IGNORECASE)
# Everything else (MessageRejected for an unverified sender or sandbox recipient, throttling,
# quotas, MailFromDomainNotVerifiedException, 5xx, unknown codes) is this provider's trouble:
# another provider may well deliver it. MessageRejected is per sender, so it must not open the
# circuit for the whole config at once.


def _ascii_address(value: str) -> str:
    """The bare address with an IDNA domain: SES wants 7-bit addresses outside the MIME body.
    Unlike SMTP's envelope, one that can't be made so (no "@", a domain IDNA can't encode)
    goes as it is, for SES to judge; so does a local part that is not ASCII."""
    address = parseaddr(value)[1] or value
    try:
        return idna_address(address)
    except UnicodeError:
        return address


def _client_error(exc: ClientError) -> ProviderError:
    error = exc.response.get("Error", {})
    code = error.get("Code") or "Unknown"
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    text = sanitize(f"SES {code}: {error.get('Message') or f'HTTP {status}'}")
    if code in _AUTH_CODES or status in (401, 403):
        return ProviderAuthError(text, code=code, response=exc.response)
    if code in _REJECTED_CODES:
        return MessageRejected(text, code=code, response=exc.response)
    message = str(error.get("Message") or "")
    rate = code in _THROTTLE_CODES or "maximum sending rate exceeded" in message.lower()
    if rate and not _QUOTA.search(message):
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
        wait = retry_after_seconds(headers.get("retry-after"))
        return ProviderThrottled(text, code=code, response=exc.response, retry_after=wait)
    return ProviderUnavailable(text, code=code, response=exc.response)


class SesProvider(Provider):
    kind = "ses"

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        access_key_id: str = "",
        secret_access_key: str = "",
        endpoint_url: str | None = None,
        configuration_set: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.region = region or "us-east-1"
        self.access_key_id = access_key_id
        self.secret_access_key = secret_access_key
        self.endpoint_url = endpoint_url or None
        self.configuration_set = configuration_set or None
        self._http: dict[str, HttpClient] = {}  # per origin: the endpoint, and no other

    def describe(self) -> str:
        return f"ses {self.region}"

    def build_client(self) -> Any:
        # Explicit keys on a private session: the default credential chain (env, ~/.aws,
        # instance role) must never send one account's mail with another's identity.
        access_key_id = self.require("access_key_id", self.access_key_id)
        secret_access_key = self.require("secret_access_key", self.secret_access_key)
        config = Config(
            connect_timeout=self.connect_timeout,
            read_timeout=self.timeout,
            # Retries are failover's, and visible. botocore's "max_attempts" counts retries
            # (1 would mean two requests, so a read timeout could send twice); this is the total.
            retries={"total_max_attempts": 1, "mode": "standard"},
            ignore_configured_endpoint_urls=True,  # AWS_ENDPOINT_URL must not redirect mail
        )
        try:
            session = boto3.session.Session(
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                region_name=self.region,
            )
            client = session.client("sesv2", endpoint_url=self.endpoint_url, config=config)
        except (BotoCoreError, ValueError) as exc:  # bad region name, malformed endpoint URL
            setting = "endpoint_url" if self.endpoint_url else "region"
            raise ConfigurationError(f"ses: cannot build a client: {exc}", setting=setting) from exc
        client.meta.events.register("before-send", self._before_send)
        return client

    def _http_for(self, origin: str) -> HttpClient:
        with self._lock:
            http = self._http.get(origin)
            if http is None:
                http = self._http[origin] = HttpClient(
                    origin,
                    label=self.describe(),
                    timeout=self.timeout,
                    connect_timeout=self.connect_timeout,
                    allow_private=self.allow_private_hosts,
                )
            return http

    def _before_send(self, request: Any, **kwargs: Any) -> AWSResponse:
        """Send botocore's signed request ourselves; its answer goes back to botocore to parse.
        Our ProviderErrors pass through botocore unchanged (one attempt, no retries)."""
        parts = urlsplit(request.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        answer = self._http_for(f"{parts.scheme}://{parts.netloc}").request(
            request.method,
            path,
            body=body or b"",
            headers={
                k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()
            },
            deadline=_deadline.get(None) or Deadline(self.attempt_deadline),
        )
        if 300 <= answer.status < 400:
            raise ConfigurationError(
                f"{self.describe()} answered HTTP {answer.status} with a redirect, which is "
                "never followed; check endpoint_url",
                setting="endpoint_url",
            )
        return AWSResponse(
            request.url, answer.status, HeadersDict(answer.headers), _Body(answer.body)
        )

    def close(self) -> None:
        super().close()
        with self._lock:
            https, self._http = list(self._http.values()), {}
        for http in https:
            http.close()

    def prepare(self, message: EmailMessage) -> dict[str, Any]:
        """SendEmail's arguments: the raw MIME (CRLF line ends) and the envelope."""
        raw = mime_message(message).as_bytes()
        # The display name travels in the raw From header; FromEmailAddress only picks the
        # identity SES checks, and a bare address avoids SES's rules for encoding names there.
        destination = {
            key: [_ascii_address(a) for a in addresses]
            for key, addresses in (
                ("ToAddresses", message.to),
                ("CcAddresses", message.cc),
                ("BccAddresses", message.bcc),
            )
            if addresses
        }
        request = {
            "FromEmailAddress": _ascii_address(message.from_email),
            "Destination": destination,
            "Content": {"Raw": {"Data": raw}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        # Our email id as a message tag: SES event publishing echoes it in mail.tags, which is
        # how an event finds its email (mailer.providers.ses.events).
        email_id = str((getattr(message, "metadata", None) or {}).get("email_id") or "")
        if _TAG_VALUE.fullmatch(email_id):
            request["EmailTags"] = [{"Name": "email_id", "Value": email_id}]
        return request

    def transmit(self, prepared: dict[str, Any], deadline: Deadline) -> str:
        client = self.client()
        token = _deadline.set(deadline)
        try:
            # Network failures never come from botocore: it sends nothing itself (_before_send),
            # and the HTTP client's ProviderErrors pass through it unchanged.
            response = client.send_email(**prepared)
        finally:
            _deadline.reset(token)
        return sanitize(str(response.get("MessageId") or ""), 255)

    def map_error(self, exc: Exception) -> ProviderError | None:
        if isinstance(exc, ClientError):
            return _client_error(exc)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ConfigurationError(f"ses: {exc}", setting="access_key_id")
        if isinstance(exc, BotoCoreError):  # parameter validation, unparsable reply and the like
            return ProviderUnavailable(
                f"{self.describe()}: {type(exc).__name__}: {exc}", code=type(exc).__name__
            )
        return None


class _Body:
    """What botocore reads an answer's body from (AWSResponse.raw)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **kwargs: Any):
        yield self._data
