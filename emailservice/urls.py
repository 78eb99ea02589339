"""Root URLs."""

from django.contrib import admin
from django.urls import include, path

from mailer.api import api
from mailer.web import accounts

urlpatterns = [
    # The admin's log-in, throttled like the site's; before admin/ so it takes that URL.
    path("admin/login/", accounts.admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    # Sign-up's emailed link and the page saying it was sent (the other account pages are in
    # mailer.web.urls).
    path("accounts/signup/sent/", accounts.sign_up_sent, name="signup-sent"),
    path("accounts/signup/confirm/<str:link>/", accounts.sign_up_confirm, name="signup-confirm"),
    path("", include("mailer.urls")),
]
