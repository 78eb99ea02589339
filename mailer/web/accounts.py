"""The site's entry (home, favicon) and account pages: sign up (finished from an emailed link),
log in, password change and reset, and the admin's log-in: each behind its throttle."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from mailer.services.accounts import (
    SignUpConflict,
    account_sign_up,
    password_reset_throttle,
    sign_up_link_read,
    sign_up_request,
    sign_up_throttle,
)

from .account_forms import (
    LoginForm,
    PasswordChangeForm,
    PasswordResetForm,
    SetPasswordForm,
    SignUpForm,
    in_minutes,
)


def home(request: HttpRequest) -> HttpResponse:
    """Signed in: the sent emails; anyone else: the log-in page."""
    return redirect("emails" if request.user.is_authenticated else "login")


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page that names no icon."""
    return redirect(static("img/favicon.svg"))


def _too_many(response: HttpResponse, seconds: int) -> HttpResponse:
    response.status_code = 429
    response["Retry-After"] = str(seconds)
    return response


# Sign-up -------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def sign_up(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("emails")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        wait = sign_up_throttle(request=request)
        if wait:
            form.add_error(
                None, f"Too many sign-ups from your network. Try again in {in_minutes(wait)}."
            )
            return _too_many(render(request, "registration/signup.html", {"form": form}), wait)
        sign_up_request(
            request=request,
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
        )
        # The same page whatever was sent: it must not tell whether either has an account.
        return redirect("signup-sent")
    return render(request, "registration/signup.html", {"form": form})


@require_GET
def sign_up_sent(request: HttpRequest) -> HttpResponse:
    return render(request, "registration/signup_sent.html")


@never_cache
@require_http_methods(["GET", "POST"])
def sign_up_confirm(request: HttpRequest, link: str) -> HttpResponse:
    """The emailed link: GET shows what it creates (mail scanners that follow links create
    nothing), the button POSTs, which creates the account and logs in."""
    details = sign_up_link_read(link)
    if details is None:
        return render(request, "registration/signup_confirm.html", {"valid": False}, status=400)
    if request.method == "POST":
        try:
            user = account_sign_up(
                username=details["username"],
                email=details["email"],
                password_hash=details["password"],
            )
        except SignUpConflict:
            return render(
                request,
                "registration/signup_confirm.html",
                {"valid": True, "conflict": True, "username": details["username"]},
                status=409,
            )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(
            request, "Welcome! Add a provider, then send your first email from the Send page."
        )
        return redirect("emails")
    return render(
        request,
        "registration/signup_confirm.html",
        {"valid": True, "username": details["username"], "email": details["email"]},
    )


# Log-in --------------------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    authentication_form = LoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form: LoginForm) -> HttpResponse:
        response = super().form_invalid(form)
        return _too_many(response, form.throttled_for) if form.throttled_for else response


def admin_login(request: HttpRequest) -> HttpResponse:
    """The admin's log-in page behind the site log-in's throttle (its form is
    account_forms.AdminLoginForm): a throttled attempt is a 429 with Retry-After."""
    response = admin.site.login(request)
    wait = getattr(request, "login_throttled_for", 0)
    return _too_many(response, wait) if wait else response


# Password change and reset -------------------------------------------------------------------


class PasswordChangeView(auth_views.PasswordChangeView):
    form_class = PasswordChangeForm

    def form_invalid(self, form: PasswordChangeForm) -> HttpResponse:
        response = super().form_invalid(form)
        return _too_many(response, form.throttled_for) if form.throttled_for else response


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset, sent through the site's failover mailer (MAILERS "default"), throttled
    per IP and per address."""

    form_class = PasswordResetForm
    subject_template_name = "registration/password_reset_subject.txt"
    email_template_name = "registration/password_reset_email.txt"

    def form_valid(self, form: PasswordResetForm) -> HttpResponse:
        wait, send = password_reset_throttle(request=self.request, email=form.cleaned_data["email"])
        if wait:
            form.add_error(
                None, f"Too many reset requests from your network. Try again in {in_minutes(wait)}."
            )
            return _too_many(self.form_invalid(form), wait)
        if not send:  # the same page as a sent one: nobody learns the address was throttled
            return redirect(self.get_success_url())
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    form_class = SetPasswordForm
