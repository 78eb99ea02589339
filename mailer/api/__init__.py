"""The JSON API at /api/v1/ (django-ninja): bearer tokens, problem details, OpenAPI."""

from ninja import NinjaAPI

from . import problems
from .auth import BearerToken, JsonOnlyParser
from .emails import router as emails_router
from .providers import router as providers_router

api = NinjaAPI(
    title="emailservice API",
    version="1",
    description="Send email through several providers with automatic failover; every email "
    "and attempt is stored. Authenticate with `Authorization: Bearer <token>`.",
    urls_namespace="api-v1",
    docs_url="/docs",
    openapi_url="/openapi.json",
    auth=BearerToken(),
    parser=JsonOnlyParser(),
)
problems.install(api)
api.add_router("/", emails_router)
api.add_router("/", providers_router)
