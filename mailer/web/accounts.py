"""The site's entry (home, favicon) and account pages: sign up, log in (throttled), password
change and reset."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.views.decorators.http import require_http_methods

from mailer.services.accounts import account_sign_up, password_reset_throttle

from . import forms


def home(request: HttpRequest) -> HttpResponse:
    """Signed in: the sent emails; anyone else: the log-in page."""
    return redirect("emails" if request.user.is_authenticated else "login")


def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico on every page that names no icon."""
    return redirect(static("img/favicon.svg"))


@require_http_methods(["GET", "POST"])
def sign_up(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("emails")
    form = forms.SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = account_sign_up(
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(
            request, "Welcome! Add a provider, then send your first email from the Send page."
        )
        return redirect("emails")
    return render(request, "registration/signup.html", {"form": form})


def _too_many(response: HttpResponse, seconds: int) -> HttpResponse:
    response.status_code = 429
    response["Retry-After"] = str(seconds)
    return response


class LoginView(auth_views.LoginView):
    authentication_form = forms.LoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form: forms.LoginForm) -> HttpResponse:
        response = super().form_invalid(form)
        return _too_many(response, form.throttled_for) if form.throttled_for else response


class PasswordResetView(auth_views.PasswordResetView):
    """Django's reset, sent through the site's failover mailer (MAILERS "default"), throttled
    per IP and per address."""

    form_class = forms.PasswordResetForm
    subject_template_name = "registration/password_reset_subject.txt"
    email_template_name = "registration/password_reset_email.txt"

    def form_valid(self, form: forms.PasswordResetForm) -> HttpResponse:
        wait, send = password_reset_throttle(request=self.request, email=form.cleaned_data["email"])
        if wait:
            form.add_error(
                None,
                f"Too many reset requests from your network. Try again in "
                f"{-(-wait // 60)} minutes.",
            )
            return _too_many(self.form_invalid(form), wait)
        if not send:  # the same page as a sent one: nobody learns the address was throttled
            return redirect(self.get_success_url())
        return super().form_valid(form)


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    form_class = forms.SetPasswordForm


class PasswordChangeView(auth_views.PasswordChangeView):
    form_class = forms.PasswordChangeForm
