"""/api/v1/providers: the account's provider configs (secrets write-only) and a test send."""

from django.http import HttpResponse
from ninja import Router, Status

from mailer.delivery.breaker import breaker
from mailer.provider_settings import LIMIT_MOST as LIMITS
from mailer.provider_settings import ProviderSettingsError
from mailer.selectors.providers import (
    pacing_usage,
    provider_detail,
    provider_get,
    provider_list,
    provider_test_addresses,
)
from mailer.services.providers import (
    provider_config_create,
    provider_config_delete,
    provider_config_update,
    provider_test_send,
)

from .schemas import (
    DbId,
    Problem,
    ProviderIn,
    ProviderList,
    ProviderOut,
    ProviderPatch,
    ProviderTestIn,
    ProviderTestOut,
)


def _base(request) -> str:
    """Where the request came in: the base of the webhook URLs shown (PUBLIC_BASE_URL wins)."""
    return request.build_absolute_uri("/")


router = Router(tags=["providers"])

ERRORS = {400: Problem, 401: Problem, 404: Problem, 409: Problem, 415: Problem, 422: Problem,
          429: Problem}  # fmt: skip


@router.get(
    "/providers", response={200: ProviderList, **ERRORS}, summary="List providers", by_alias=True
)
def list_providers(request):
    """The account's providers in failover order (ascending `priority`, then id)."""
    configs = provider_list(account=request.account)
    circuit_breaker, usage = breaker(), pacing_usage(configs)
    return {
        "count": len(configs),
        "results": [
            provider_detail(c, breaker=circuit_breaker, base_url=_base(request), usage=usage)
            for c in configs
        ],
    }


@router.post(
    "/providers",
    response={201: ProviderOut, **ERRORS},
    summary="Add a provider",
    by_alias=True,
)
def create_provider(request, response: HttpResponse, payload: ProviderIn):
    """Add a provider. `secrets` are stored encrypted and never returned: `secrets_set` lists
    their names. 422 names each bad field (e.g. `settings.host`); 409 if the name is taken.
    Hosts must be public addresses (or names resolving only to public addresses)."""
    config = provider_config_create(account=request.account, **payload.model_dump())
    response["Location"] = request.build_absolute_uri(f"{request.path.rstrip('/')}/{config.pk}")
    return Status(201, provider_detail(config, breaker=breaker(), base_url=_base(request)))


@router.get(
    "/providers/{provider_id}",
    response={200: ProviderOut, **ERRORS},
    summary="One provider",
    by_alias=True,
)
def get_provider(request, provider_id: DbId):
    """One provider with its circuit state; never its secrets."""
    return provider_detail(
        provider_get(account=request.account, provider_id=provider_id),
        breaker=breaker(),
        base_url=_base(request),
    )


@router.patch(
    "/providers/{provider_id}",
    response={200: ProviderOut, **ERRORS},
    summary="Change a provider",
    by_alias=True,
)
def update_provider(request, provider_id: DbId, payload: ProviderPatch):
    """Change the fields given. `settings` replaces all settings of the kind (defaults fill the
    rest); `secrets` merge into the stored ones, and `""` or `null` removes one (required ones
    can't be removed). The kind can't change. Any change closes the provider's circuit."""
    config = provider_get(account=request.account, provider_id=provider_id)
    changes = payload.model_dump(exclude_unset=True)
    kind = changes.pop("kind", None)  # accepted when it is the same
    limits = {name: changes.pop(name) for name in LIMITS if name in changes}  # null: none
    if kind not in (None, config.kind):
        message = (
            f"can't change from {config.kind!r}; create a new provider of kind {kind!r} instead."
        )
        raise ProviderSettingsError({"kind": [message]})
    config = provider_config_update(config=config, limits=limits, **changes)
    return provider_detail(config, breaker=breaker(), base_url=_base(request))


@router.delete(
    "/providers/{provider_id}", response={204: None, **ERRORS}, summary="Remove a provider"
)
def delete_provider(request, provider_id: DbId):
    """Remove a provider. Emails sent through it keep their history (without the link)."""
    provider_config_delete(config=provider_get(account=request.account, provider_id=provider_id))
    return Status(204, None)


@router.post(
    "/providers/{provider_id}/test",
    response={200: ProviderTestOut, **ERRORS},
    summary="Send a test message",
    by_alias=True,
)
def test_provider(request, provider_id: DbId, payload: ProviderTestIn | None = None):
    """Send a short test message through this provider only: no failover, nothing stored.

    The answer is 200 whenever the test ran, also when the provider failed: `outcome` is then
    `provider_error` (or `rejected`, `ambiguous`) with `error_code` and `error_message`.
    The attempt counts for the provider's circuit like a real one; an open circuit does not
    stop the test. `to` defaults to the account's email, `from` to the site's sender.
    """
    config = provider_get(account=request.account, provider_id=provider_id)
    payload = payload or ProviderTestIn()
    to, from_email = provider_test_addresses(
        account=request.account, to=payload.to, from_email=payload.from_
    )
    attempt = provider_test_send(config=config, to=to, from_email=from_email)
    return {
        "outcome": attempt.outcome,
        "error_code": attempt.code,
        "error_message": attempt.message,
        "provider_message_id": attempt.message_id,
        "duration_ms": round(attempt.duration * 1000),
        "to": to,
        "from": from_email,
        "circuit": provider_detail(config, breaker=breaker())["circuit"],
    }
