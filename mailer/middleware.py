"""Request and response hygiene: refuse bodies over MAX_MESSAGE_BYTES (a batch send's over
BATCH_MAX_BYTES) from their Content-Length before reading them; keep every authenticated answer
out of caches."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.utils.cache import patch_cache_control

from mailer.api.problems import app_error
from mailer.errors import MessageTooLarge
from mailer.legacy import error_answer

# The batch send's path: its body holds up to BATCH_MAX_EMAILS emails, so it has its own limit.
BATCH_PATH = "/api/v1/emails/batch"


class RequestSizeLimitMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        batch = request.path == BATCH_PATH
        limit = settings.BATCH_MAX_BYTES if batch else settings.MAX_MESSAGE_BYTES
        if length > limit:
            return self._too_large(request, length, limit, batch=batch)
        if batch and length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            # Django refuses to read a body over DATA_UPLOAD_MAX_MEMORY_SIZE (MAX_MESSAGE_BYTES);
            # this one is within its own limit, so read it here into Django's cache of it.
            request._body = request.read()
        return self.get_response(request)

    @staticmethod
    def _too_large(request, length: int, limit: int, *, batch: bool = False) -> HttpResponse:
        setting = "BATCH_MAX_BYTES" if batch else "MAX_MESSAGE_BYTES"
        advice = "Send smaller batches." if batch else "Send smaller attachments."
        detail = (
            f"The request body is {length} bytes; the limit is {limit} bytes ({setting}). {advice}"
        )
        error = MessageTooLarge({"message": [detail]}, message=detail)
        # The API's problem details, else the original contract's shape: each edge's own answer.
        answer = app_error if request.path.startswith("/api/") else error_answer
        response = answer(error)
        response["Connection"] = "close"  # we did not read the body; don't reuse the socket
        return response


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every answer to an authenticated request, so no browser or
    proxy keeps a copy of an account's pages or data.

    Authenticated: a signed-in session (checked only when a session cookie is involved, so
    other requests don't load a session), or an API credential (a bearer header or the
    original contract's TOKEN). A page's own Cache-Control gets no-store and private added;
    an API answer that set its own Cache-Control keeps it as it is. Static files never get
    here: WhiteNoise, earlier in MIDDLEWARE, answers them with their own long-lived headers.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if self._signed_in(request, response):
            patch_cache_control(response, no_store=True, private=True)
        elif self._api_credentials(request) and not response.has_header("Cache-Control"):
            patch_cache_control(response, no_store=True, private=True)
        return response

    @staticmethod
    def _signed_in(request, response) -> bool:
        cookie = settings.SESSION_COOKIE_NAME
        if cookie not in request.COOKIES and cookie not in response.cookies:
            return False
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated)

    @staticmethod
    def _api_credentials(request) -> bool:
        return "HTTP_AUTHORIZATION" in request.META or any(
            name.lower() in ("token", "api_key") for name in request.GET
        )
