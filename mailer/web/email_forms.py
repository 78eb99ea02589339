"""Forms of the send and sent-email pages; the services judge the email itself."""

from __future__ import annotations

import mimetypes
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.html import escape

from mailer.models import EmailStatus, ProviderConfig
from mailer.templating import MAX_VARIABLES_BYTES
from mailer.validation import Attachment, max_address_text
from mailer.vocabulary import DeliveryState

from .forms import PageForm, template_variables

_CONTENT_TYPE = re.compile(r"^[\w.+-]+/[\w.+-]+$")


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


class UTCDateTimeField(forms.DateTimeField):
    """A date and time as a datetime-local input sends it ("2026-12-24T09:00"), read as UTC
    whatever time zone is active: the page says UTC beside it."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")

    def to_python(self, value) -> datetime | None:
        with timezone.override(UTC):
            found = super().to_python(value)
        if found is not None and timezone.is_naive(found):
            found = found.replace(tzinfo=UTC)
        return found


class SendForm(PageForm, forms.Form):
    service_fields = {"from": "from_email"}
    # Errors of the services about the send itself, not the template's: they stay by their field.
    send_fields = ("send_at",)

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
    template = forms.ChoiceField(
        label="Template",
        required=False,
        help_text="Optional: one of your templates, rendered with the variables below, in place "
        "of the subject and bodies.",
    )
    variables = forms.CharField(
        label="Template variables",
        required=False,
        help_text='A JSON object, e.g. {"first_name": "Ann"}.',
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
    )
    subject = forms.CharField(label="Subject", max_length=998, required=False)
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
    send_at = UTCDateTimeField(label="Send at (UTC)", required=False)
    # One per rendered form: sending the same form twice (a double click) sends once.
    submission = forms.CharField(widget=forms.HiddenInput, max_length=64)

    def __init__(
        self, *args, providers: Iterable[ProviderConfig], templates: Iterable[str] = (), **kwargs
    ) -> None:
        super().__init__(*args, **kwargs)
        self.providers = {config.pk: config for config in providers}
        none = ("", "None: write it here")
        self.fields["template"].choices = [none, *((name, name) for name in templates)]
        _cap(self.fields["variables"], MAX_VARIABLES_BYTES)
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
        self.fields["send_at"].help_text = (
            f"Optional: send it later, at a time in UTC up to {settings.SCHEDULE_MAX_DAYS:g} days "
            "ahead. Until then it waits as scheduled and can be canceled. Empty, or a time already "
            "past, sends now."
        )

    def clean_variables(self) -> dict[str, Any]:
        try:
            return template_variables(self.cleaned_data["variables"])
        except ValueError as exc:
            raise ValidationError(str(exc), code="json") from None

    def clean(self) -> dict[str, Any]:
        """A template, or a subject: a template replaces the subject and both bodies."""
        data = super().clean()
        if data.get("template"):
            if data.get("subject") or data.get("text") or data.get("html"):
                self.add_error(
                    "template",
                    "A template replaces the subject and bodies: clear them, or choose no "
                    "template.",
                )
        elif not data.get("subject") and "subject" not in self.errors:
            self.add_error("subject", ValidationError(self.fields["subject"].error_messages[
                "required"], code="required"))  # fmt: skip
            if data.get("variables"):
                self.add_error("variables", "Variables need a template.")
        return data

    @property
    def chosen_template(self) -> dict[str, Any] | None:
        """{"name", "variables"} when the valid form names a template."""
        name = self.cleaned_data.get("template")
        return {"name": name, "variables": self.cleaned_data["variables"]} if name else None

    def add_app_error(self, error) -> None:
        """A template's errors stand by the template's fields: a missing variable by the
        variables, anything about its parts by the template (its bodies are not on the page)."""
        if self.cleaned_data.get("template") and error.errors:
            moved: dict[str, list[str]] = {}
            for key, found in error.errors.items():
                if key in self.send_fields:
                    moved.setdefault(key, []).extend(found)
                    continue
                field = "variables" if key.startswith("variables") else "template"
                prefix = "" if key in ("template", "variables") else f"{key}: "
                moved.setdefault(field, []).extend(prefix + message for message in found)
            error.errors = moved
        super().add_app_error(error)

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
    def chosen_send_at(self) -> datetime | None:
        """The time asked for, UTC-aware; mailer.services.outgoing.schedule_time judges it."""
        return self.cleaned_data.get("send_at")

    @property
    def chosen_provider(self) -> ProviderConfig | None:
        return self.providers.get(self.cleaned_data.get("provider"))

    def email_values(self) -> dict[str, Any]:
        """The email the valid form asks for, as mailer.send_request.outgoing_email takes it."""
        data = self.cleaned_data
        return {
            "from_email": data["from_email"].strip(),
            "to": split_addresses(data["to"]),
            "cc": split_addresses(data["cc"]),
            "bcc": split_addresses(data["bcc"]),
            "reply_to": split_addresses(data["reply_to"]),
            "subject": data["subject"],
            "text": data["text"],
            "html": data["html"],
            "attachments": [_attachment(f) for f in data["attachments"]],
        }

    def idempotency_key(self, fingerprint: str) -> str:
        """This rendering of the form with this content: sent again, it sends once; changed,
        it is a new email."""
        return f"web:{self.cleaned_data['submission']}:{fingerprint[:16]}"

    @property
    def chosen_files(self) -> list[str]:
        return [f.name for f in self.files.getlist(self.add_prefix("attachments"))]


def _attachment(upload) -> Attachment:
    content_type = upload.content_type or ""
    if not _CONTENT_TYPE.match(content_type):
        content_type = mimetypes.guess_type(upload.name)[0] or "application/octet-stream"
    return Attachment(filename=upload.name, content_type=content_type, content=upload.read())


# Sent emails -----------------------------------------------------------------------------------


class EmailFilterForm(PageForm, forms.Form):
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "Any status"), *EmailStatus.choices]
    )
    provider = forms.TypedChoiceField(
        label="Sent via", required=False, coerce=int, empty_value=None
    )
    delivery = forms.ChoiceField(
        label="Delivery", required=False, choices=[("", "Any delivery"), *DeliveryState.choices]
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
                "delivery": self.cleaned_data["delivery"] or None,
            }
        return {"status": None, "provider_id": None, "delivery": None}
