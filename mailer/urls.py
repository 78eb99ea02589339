"""URLs of the mailer app: health, the original contract, and the pages."""

from django.urls import include, path

from . import legacy, metrics, provider_webhooks, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("send_email/", legacy.send_email, name="legacy-send-email"),
    path("view_sent_emails/", legacy.view_sent_emails, name="legacy-view-sent-emails"),
    path("webhooks/in/<str:token>/", provider_webhooks.receive, name="provider-webhook"),
    path("", include("mailer.web.urls")),
]
