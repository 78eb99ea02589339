"""Refuse request bodies over MAX_MESSAGE_BYTES from their Content-Length, before reading them."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import HttpResponse


class RequestSizeLimitMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.MAX_MESSAGE_BYTES
        if length > limit:
            return self._too_large(request, length, limit)
        return self.get_response(request)

    @staticmethod
    def _too_large(request, length: int, limit: int) -> HttpResponse:
        detail = (
            f"The request body is {length} bytes; the limit is {limit} bytes "
            "(MAX_MESSAGE_BYTES). Send smaller attachments."
        )
        if request.path.startswith("/api/"):
            body = {
                "type": "about:blank",
                "title": "Content too large",
                "status": 413,
                "detail": detail,
            }
            content_type = "application/problem+json"
        else:  # the original contract's JSON shape
            body = {"message": detail, "errors": {"message": [detail]}, "status": 413}
            content_type = "application/json"
        response = HttpResponse(json.dumps(body), status=413, content_type=content_type)
        response["Connection"] = "close"  # we did not read the body; don't reuse the socket
        return response
