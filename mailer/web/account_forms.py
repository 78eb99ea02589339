"""Forms of the account pages (sign-up, log-in, password change and reset) and the admin's
log-in: each check of a password behind its throttle."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import forms as auth_forms
from django.core.exceptions import ValidationError

from mailer.services.accounts import (
    login_failure_record,
    login_success_record,
    login_throttle_check,
    password_check_record,
    password_check_throttle,
)

from .forms import PageForm


def in_minutes(seconds: int) -> str:
    """A wait for people: "3 minutes", rounded up."""
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def _behind_throttle[T](
    wait: int, refusal: str, check: Callable[[], T], record: Callable[[bool], None]
) -> T:
    """A password check behind its throttle: refused while `wait` seconds remain (`refusal`
    says so, with "{wait}" for how long), else run, its outcome recorded (True: correct)."""
    if wait:
        raise ValidationError(refusal.format(wait=in_minutes(wait)), code="throttled")
    try:
        result = check()
    except ValidationError:
        record(False)
        raise
    record(True)
    return result


class SignUpForm(PageForm, auth_forms.UserCreationForm):
    """The sign-up form without the checks that tell whether a username or an address has an
    account: the service answers those by email (services.accounts.sign_up_request)."""

    email = forms.EmailField(
        label="Email",
        max_length=254,
        help_text="We send a link here to finish signing up, and password reset links later.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    class Meta(auth_forms.UserCreationForm.Meta):
        fields = ("username", "email")

    def clean_username(self) -> str:
        return self.cleaned_data.get("username")

    def validate_unique(self) -> None:
        pass


class ThrottledLoginMixin:
    """For an AuthenticationForm: a throttled attempt never checks the password; a failure is
    counted, a success clears this name's failures at this address. A throttled attempt also
    leaves its wait on the request (request.login_throttled_for) for the admin's log-in view."""

    throttled_for = 0

    def clean(self) -> dict:
        username = self.cleaned_data.get("username") or ""
        self.throttled_for = login_throttle_check(request=self.request, username=username)
        if self.throttled_for:
            self.request.login_throttled_for = self.throttled_for

        def record(correct: bool) -> None:
            outcome = login_success_record if correct else login_failure_record
            outcome(request=self.request, username=username)

        return _behind_throttle(
            self.throttled_for,
            "Too many failed log-ins for this account or from your network. Try again in {wait}, "
            "or reset your password.",
            super().clean,
            record,
        )


class LoginForm(ThrottledLoginMixin, PageForm, auth_forms.AuthenticationForm):
    """The site's log-in form."""


class AdminLoginForm(ThrottledLoginMixin, AdminAuthenticationForm):
    """The admin's log-in form, throttled like the site's (the same counters)."""


class PasswordChangeForm(PageForm, auth_forms.PasswordChangeForm):
    """The old-password check behind the same growing backoff as log-ins, per account."""

    throttled_for = 0

    def clean_old_password(self) -> str:
        self.throttled_for = password_check_throttle(account=self.user)
        return _behind_throttle(
            self.throttled_for,
            "Too many wrong passwords. Try again in {wait}.",
            super().clean_old_password,
            lambda correct: password_check_record(account=self.user, correct=correct),
        )


class PasswordResetForm(PageForm, auth_forms.PasswordResetForm):
    pass


class SetPasswordForm(PageForm, auth_forms.SetPasswordForm):
    pass
