"""URLs of the pages, by feature: the entry, emails, accounts, providers, health, API tokens,
webhooks, the suppression list, email templates."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import accounts, emails, health, providers, suppressions, templates, tokens, webhooks

urlpatterns = [
    path("", accounts.home, name="home"),
    path("favicon.ico", accounts.favicon, name="favicon"),
    path("emails/", emails.listing, name="emails"),
    path("emails/<int:email_id>/", emails.detail, name="email"),
    path("emails/<int:email_id>/cancel/", emails.cancel, name="email-cancel"),
    path("emails/<int:email_id>/resend/", emails.resend, name="email-resend"),
    path("send/", emails.send, name="send"),
    path("accounts/signup/", accounts.sign_up, name="signup"),
    path("accounts/login/", accounts.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/change/",
        accounts.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password/change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/password/reset/", accounts.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        accounts.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("providers/", providers.listing, name="providers"),
    path("providers/add/", providers.add_choice, name="provider-add-choice"),
    path("providers/add/<str:kind>/", providers.add, name="provider-add"),
    path("providers/<int:provider_id>/edit/", providers.edit, name="provider-edit"),
    path("providers/<int:provider_id>/delete/", providers.delete, name="provider-delete"),
    path("providers/<int:provider_id>/move/", providers.move, name="provider-move"),
    path("providers/<int:provider_id>/enabled/", providers.enable, name="provider-enable"),
    path("providers/<int:provider_id>/test/", providers.test, name="provider-test"),
    path("health/", health.health, name="health"),
    path("tokens/", tokens.listing, name="tokens"),
    path("tokens/created/", tokens.created, name="token-created"),
    path("tokens/<int:token_id>/revoke/", tokens.revoke, name="token-revoke"),
    path("suppressions/", suppressions.listing, name="suppressions"),
    path("suppressions/remove/", suppressions.remove, name="suppression-remove"),
    path("suppressions/import/", suppressions.import_csv, name="suppression-import"),
    path("suppressions/export/", suppressions.export_csv, name="suppression-export"),
    path("templates/", templates.listing, name="templates"),
    path("templates/new/", templates.add, name="template-add"),
    path("templates/preview/", templates.preview, name="template-preview"),
    path("templates/<str:name>/edit/", templates.edit, name="template-edit"),
    path("templates/<str:name>/delete/", templates.delete, name="template-delete"),
    # Providers post their events to webhooks/in/<token>/ (mailer/urls.py); these are the pages.
    path("webhooks/", webhooks.listing, name="webhooks"),
    path("webhooks/<int:endpoint_id>/enabled/", webhooks.enable, name="webhook-enable"),
    path("webhooks/<int:endpoint_id>/rotate/", webhooks.rotate, name="webhook-rotate"),
    path("webhooks/<int:endpoint_id>/delete/", webhooks.delete, name="webhook-delete"),
    path("webhooks/<int:endpoint_id>/deliveries/", webhooks.deliveries, name="webhook-deliveries"),
    path(
        "webhooks/<int:endpoint_id>/deliveries/<int:message_id>/retry/",
        webhooks.retry,
        name="webhook-retry",
    ),
]
