"""Bearer-token authentication (and the per-token rate limit) for the API."""

import json

from ninja.parser import Parser
from ninja.security import HttpBearer

from mailer.ratelimit import check_rate
from mailer.services import token_authenticate

from .problems import BadBody


class BearerToken(HttpBearer):
    def authenticate(self, request, token: str):
        api_token = token_authenticate(raw=token.strip())
        if api_token is None:
            return None
        request.api_token = api_token
        request.account = api_token.account
        check_rate(request, api_token)
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
