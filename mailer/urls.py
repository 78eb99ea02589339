"""URLs of the mailer app: health, the original contract, and the pages."""

from django.urls import include, path

from . import legacy, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("send_email/", legacy.send_email, name="legacy-send-email"),
    path("view_sent_emails/", legacy.view_sent_emails, name="legacy-view-sent-emails"),
    path("", include("mailer.web.urls_main")),
    path("", include("mailer.web.urls_settings")),
]
