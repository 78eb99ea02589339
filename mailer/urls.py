"""URLs of the mailer app."""

from django.urls import path

from . import legacy, views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("send_email/", legacy.send_email, name="legacy-send-email"),
    path("view_sent_emails/", legacy.view_sent_emails, name="legacy-view-sent-emails"),
]
