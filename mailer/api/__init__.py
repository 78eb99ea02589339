"""The JSON API at /api/v1/ (django-ninja): bearer tokens, problem details, OpenAPI."""

from ninja import NinjaAPI

from mailer.validation import json_depth_problem, json_too_deep_message

from . import problems
from .auth import BearerToken, JsonOnlyParser
from .batches import router as batches_router
from .emails import router as emails_router
from .problems import BadBody
from .providers import router as providers_router
from .rendering import FastJSONRenderer
from .suppressions import router as suppressions_router
from .templates import router as templates_router
from .webhooks import router as webhooks_router


class BoundedJsonParser(JsonOnlyParser):
    """JSON bodies (JsonOnlyParser) nested at most MAX_JSON_DEPTH levels: deeper is a 400 that
    says so, never a RecursionError, and no deep value reaches pydantic or the database."""

    def parse_body(self, request):
        try:
            data = super().parse_body(request)
        except RecursionError:  # json.loads gave up on the nesting before we could count it
            raise BadBody(400, json_too_deep_message()) from None
        if problem := json_depth_problem(data, request.body):
            raise BadBody(400, problem)
        return data


api = NinjaAPI(
    title="emailservice API",
    version="1",
    description="Send email through several providers with automatic failover; every email "
    "and attempt is stored. Authenticate with `Authorization: Bearer <token>`.",
    urls_namespace="api-v1",
    docs_url="/docs",
    openapi_url="/openapi.json",
    auth=BearerToken(),
    parser=BoundedJsonParser(),
    renderer=FastJSONRenderer(),
)
problems.install(api)
api.add_router("/", batches_router)  # before /emails/{email_id}
api.add_router("/", emails_router)
api.add_router("/", providers_router)
api.add_router("/", suppressions_router)
api.add_router("/", templates_router)
api.add_router("/", webhooks_router)
