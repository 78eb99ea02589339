"""Bearer-token authentication (and the per-account rate limit) for the API."""

import json
from collections.abc import Callable
from typing import Any

from ninja.parser import Parser
from ninja.security import HttpBearer

from mailer.authentication import authenticate
from mailer.roundtrip import Rider

from .problems import BadBody

# prefetch(request, account_id): the cache reads the operation will make (a mailer.roundtrip
# rider), or None. Called before the operation's parameters are validated: it must cope with bad
# ones (return None, and the operation answers 422 as ever).
Prefetch = Callable[[Any, int], Rider | None]


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`; sets request.api_token and request.account, and counts
    the request against the account's rate limit (RateLimited past it).

    An operation may pass `prefetch`: its cache reads then ride in the rate limit's Redis round
    trip and land on request.prefetched (one round trip for auth, list version and page).
    """

    def __init__(self, prefetch: Prefetch | None = None) -> None:
        super().__init__()
        self.prefetch = prefetch

    def authenticate(self, request, token: str):
        def along(api_token) -> list:
            if self.prefetch is None:
                return []
            request.prefetched = self.prefetch(request, api_token.account_id)
            return [request.prefetched] if request.prefetched is not None else []

        api_token = authenticate(request, token.strip(), along=along)
        if api_token is None:
            return None
        request.api_token = api_token
        request.account = api_token.account
        return api_token


class JsonOnlyParser(Parser):
    """Bodies must be JSON, said so in Content-Type, and parse; the error says which failed."""

    def parse_body(self, request):
        content_type = request.content_type or ""
        if content_type != "application/json" and not content_type.endswith("+json"):
            raise BadBody(
                415,
                f"Send the body as JSON with 'Content-Type: application/json', "
                f"not {content_type or 'no content type'!r}.",
            )
        try:
            return json.loads(request.body)
        except (UnicodeDecodeError, ValueError) as exc:
            raise BadBody(400, f"The body is not valid JSON: {exc}.") from None
