"""URLs of the provider, health and API token pages."""

from django.urls import path

from . import health, providers, tokens

urlpatterns = [
    path("providers/", providers.providers, name="providers"),
    path("providers/add/", providers.provider_add_choice, name="provider-add-choice"),
    path("providers/add/<str:kind>/", providers.provider_add, name="provider-add"),
    path("providers/<int:provider_id>/edit/", providers.provider_edit, name="provider-edit"),
    path("providers/<int:provider_id>/delete/", providers.provider_delete, name="provider-delete"),
    path("providers/<int:provider_id>/move/", providers.provider_reorder, name="provider-move"),
    path("providers/<int:provider_id>/enabled/", providers.provider_enable, name="provider-enable"),
    path("providers/<int:provider_id>/test/", providers.provider_test, name="provider-test"),
    path("health/", health.health, name="health"),
    path("tokens/", tokens.tokens, name="tokens"),
    path("tokens/created/", tokens.token_created, name="token-created"),
    path("tokens/<int:token_id>/revoke/", tokens.token_revoke_view, name="token-revoke"),
]
