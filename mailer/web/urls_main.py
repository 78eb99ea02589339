"""URLs of the account, send and sent-email pages."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import accounts, emails

urlpatterns = [
    path("", accounts.home, name="home"),
    path("favicon.ico", accounts.favicon, name="favicon"),
    path("emails/", emails.email_list, name="emails"),
    path("emails/<int:email_id>/", emails.email_detail, name="email"),
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
]
