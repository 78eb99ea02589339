"""Forms of the account, send and sent-email pages; the services judge the email itself."""

from __future__ import annotations

import hashlib
import mimetypes
import re
import secrets
from collections.abc import Iterable

from django import forms
from django.conf import settings
from django.contrib.auth import forms as auth_forms
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.template.defaultfilters import filesizeformat
from django.utils.html import escape

from mailer.models import EmailStatus, ProviderConfig
from mailer.services.accounts import login_failure_record, login_throttle_check
from mailer.validation import Attachment, OutgoingEmail, max_address_text

from .settings_forms import BootstrapBoundField

# The service's field names (mailer.validation) -> this form's; others go above the form.
SERVICE_FIELDS = {
    "from": "from_email",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "reply_to": "reply_to",
    "subject": "subject",
    "text": "text",
    "attachments": "attachments",
}
_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")


class BootstrapMixin:
    """Bootstrap's classes on every field (as on the provider pages), and the errors for the
    summary above a form (templates/emails/_form_errors.html)."""

    bound_field_class = BootstrapBoundField

    @property
    def fields_with_errors(self) -> list:
        """The visible fields that have errors, in form order (for the error summary)."""
        return [field for field in self.visible_fields() if field.errors]

    @property
    def other_errors(self) -> list[str]:
        """Errors not shown beside a visible field: the form's own and hidden fields'."""
        hidden = [error for field in self.hidden_fields() for error in field.errors]
        return [*self.non_field_errors(), *hidden]


# Accounts --------------------------------------------------------------------------------------


class SignUpForm(BootstrapMixin, auth_forms.UserCreationForm):
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


class LoginForm(BootstrapMixin, auth_forms.AuthenticationForm):
    """Django's log-in form behind a throttle: a throttled attempt never checks the password."""

    throttled_for = 0

    def clean(self) -> dict:
        username = self.cleaned_data.get("username") or ""
        self.throttled_for = login_throttle_check(request=self.request, username=username)
        if self.throttled_for:
            minutes = -(-self.throttled_for // 60)
            raise ValidationError(
                f"Too many failed log-ins for this account or from your network. "
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}, or reset your "
                f"password.",
                code="throttled",
            )
        try:
            return super().clean()
        except ValidationError:
            login_failure_record(request=self.request, username=username)
            raise


class PasswordChangeForm(BootstrapMixin, auth_forms.PasswordChangeForm):
    pass


class PasswordResetForm(BootstrapMixin, auth_forms.PasswordResetForm):
    pass


class SetPasswordForm(BootstrapMixin, auth_forms.SetPasswordForm):
    pass


# Sending ---------------------------------------------------------------------------------------


def split_addresses(text: str) -> list[str]:
    """Addresses separated by commas or new lines; a comma inside quotes or <> is kept."""
    parts, current, quoted, angle = [], [], False, 0
    for char in text:
        if char == '"':
            quoted = not quoted
        elif char == "<" and not quoted:
            angle += 1
        elif char == ">" and not quoted and angle:
            angle -= 1
        if char in ",\n\r;" and not quoted and not angle:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


class MultipleFileInput(forms.FileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None) -> list:
        single = super().clean
        if isinstance(data, list | tuple):
            return [single(item, initial) for item in data if item]
        return [single(data, initial)] if data else []


def _cap(field: forms.CharField, limit: int) -> None:
    """Give a field the length limit of the settings (checked before anything parses it)."""
    field.max_length = limit
    field.validators = [v for v in field.validators if not isinstance(v, MaxLengthValidator)]
    field.validators.append(MaxLengthValidator(limit))
    field.widget.attrs["maxlength"] = str(limit)


def _addresses_field(label: str, *, required: bool = False, rows: int = 2) -> forms.CharField:
    return forms.CharField(
        label=label,
        required=required,
        help_text="Separate addresses with commas or new lines.",
        widget=forms.Textarea(attrs={"rows": rows, "autocomplete": "off", "spellcheck": "false"}),
    )


class SendForm(BootstrapMixin, forms.Form):
    from_email = forms.CharField(
        label="From",
        max_length=320,
        help_text=escape('An address your provider may send from, e.g. "Team <team@example.com>".'),
        widget=forms.TextInput(attrs={"autocomplete": "email", "spellcheck": "false"}),
    )
    to = _addresses_field("To", required=True)
    cc = _addresses_field("Cc", rows=1)
    bcc = _addresses_field("Bcc", rows=1)
    reply_to = _addresses_field("Reply-To", rows=1)
    subject = forms.CharField(label="Subject", max_length=998)
    text = forms.CharField(
        label="Text body",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8}),
    )
    html = forms.CharField(
        label="HTML body",
        required=False,
        strip=False,
        help_text="Optional. Give a text body, an HTML body, or both.",
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false"}),
    )
    attachments = MultipleFileField(label="Attachments", required=False)
    provider = forms.TypedChoiceField(label="Send through", coerce=int)
    # One per rendered form: sending the same form twice (a double click) sends once.
    submission = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(self, *args, providers: Iterable[ProviderConfig], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.providers = {config.pk: config for config in providers}
        choices = [
            (pk, f"{config.name} ({config.get_kind_display()})" + (" · default" if i == 0 else ""))
            for i, (pk, config) in enumerate(self.providers.items())
        ]
        self.fields["provider"].choices = choices
        self.fields[
            "provider"
        ].help_text = "If it fails, the next providers in your failover order are tried."
        if choices and not self.is_bound:
            self.initial.setdefault("provider", choices[0][0])
        self.initial.setdefault("submission", secrets.token_urlsafe(16))
        # Input limits (the service checks them too): no field is longer than its most.
        address = max_address_text()
        _cap(self.fields["from_email"], address)
        for name in ("to", "cc", "bcc"):
            _cap(self.fields[name], settings.MAX_RECIPIENTS * (address + 2))
        _cap(self.fields["reply_to"], settings.MAX_REPLY_TO * (address + 2))
        _cap(self.fields["subject"], settings.MAX_SUBJECT_CHARS)
        limit = filesizeformat(settings.MAX_MESSAGE_BYTES * 3 // 4)
        files = settings.MAX_ATTACHMENTS
        self.fields["attachments"].help_text = f"Up to {files} files, about {limit} in all."
        self.fields["attachments"].widget.attrs["data-max-bytes"] = settings.MAX_MESSAGE_BYTES

    def clean_attachments(self) -> list:
        files = self.cleaned_data["attachments"]
        if len(files) > settings.MAX_ATTACHMENTS:
            raise ValidationError(
                f"{len(files)} files chosen; at most {settings.MAX_ATTACHMENTS} can be attached.",
                code="too_many",
            )
        # What goes over the wire is base64: 4 bytes for every 3.
        encoded = sum((f.size + 2) // 3 * 4 for f in files)
        if encoded > settings.MAX_MESSAGE_BYTES:
            raise ValidationError(
                f"The attachments come to {filesizeformat(sum(f.size for f in files))}; "
                f"the limit is about {filesizeformat(settings.MAX_MESSAGE_BYTES * 3 // 4)} "
                "in all. Choose smaller files.",
                code="too_large",
            )
        return files

    @property
    def chosen_provider(self) -> ProviderConfig | None:
        return self.providers.get(self.cleaned_data.get("provider"))

    def outgoing(self) -> OutgoingEmail:
        data = self.cleaned_data
        return OutgoingEmail(
            from_email=data["from_email"].strip(),
            to=split_addresses(data["to"]),
            cc=split_addresses(data["cc"]),
            bcc=split_addresses(data["bcc"]),
            reply_to=split_addresses(data["reply_to"]),
            subject=data["subject"],
            text=data["text"],
            html=data["html"],
            attachments=[_attachment(f) for f in data["attachments"]],
        )

    def idempotency(self, outgoing: OutgoingEmail) -> tuple[str, str]:
        """(key, fingerprint): the same form sent again with the same content sends once."""
        digest = hashlib.sha256()
        for part in (
            outgoing.from_email,
            outgoing.to,
            outgoing.cc,
            outgoing.bcc,
            outgoing.reply_to,
            outgoing.subject,
            outgoing.text,
            outgoing.html,
            self.cleaned_data["provider"],
        ):
            digest.update(repr(part).encode() + b"\0")
        for attachment in outgoing.attachments:
            digest.update(f"{attachment.filename}\0{attachment.content_type}\0".encode())
            digest.update(hashlib.sha256(attachment.content).digest())
        fingerprint = digest.hexdigest()
        return f"web:{self.cleaned_data['submission']}:{fingerprint[:16]}", fingerprint

    def add_service_errors(self, errors: dict[str, list[str]]) -> None:
        for name, messages in errors.items():
            field = SERVICE_FIELDS.get(name)
            for message in messages:
                self.add_error(field, message)

    @property
    def chosen_files(self) -> list[str]:
        return [f.name for f in self.files.getlist(self.add_prefix("attachments"))]


def _attachment(upload) -> Attachment:
    content_type = upload.content_type or ""
    if not _CONTENT_TYPE.match(content_type):
        content_type = mimetypes.guess_type(upload.name)[0] or "application/octet-stream"
    return Attachment(filename=upload.name, content_type=content_type, content=upload.read())


# Sent emails -----------------------------------------------------------------------------------


class EmailFilterForm(BootstrapMixin, forms.Form):
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any status"), *EmailStatus.choices]
    )
    provider = forms.TypedChoiceField(
        label="Sent via", required=False, coerce=int, empty_value=None
    )

    def __init__(self, *args, providers: Iterable[ProviderConfig], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["provider"].choices = [("", "Any provider")] + [
            (config.pk, str(config)) for config in providers
        ]

    def filters(self) -> dict:
        """The filters to apply; any invalid value is ignored rather than refused."""
        if self.is_valid():
            return {
                "status": self.cleaned_data["status"] or None,
                "provider_id": self.cleaned_data["provider"],
            }
        return {"status": None, "provider_id": None}
