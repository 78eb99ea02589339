"""Forms of the provider and API token pages: one provider form per kind, secrets write-only."""

from __future__ import annotations

from typing import Any

from django import forms

from mailer.models import ProviderConfig
from mailer.provider_settings import (
    KINDS,
    MAX_SECRET_LENGTH,
    PRESETS,
    ProviderSettingsError,
)
from mailer.validation import check_address


class BootstrapBoundField(forms.BoundField):
    """Renders with Bootstrap's classes; Django adds aria-invalid and aria-describedby.
    Pages lay a field out with templates/providers/_field.html."""

    @property
    def is_checkbox(self) -> bool:
        return isinstance(self.field.widget, forms.CheckboxInput)

    def build_widget_attrs(self, attrs, widget=None):
        attrs = super().build_widget_attrs(attrs, widget)
        widget = widget or self.field.widget
        if isinstance(widget, forms.CheckboxInput):
            css = "form-check-input"
        elif isinstance(widget, forms.Select):
            css = "form-select"
        else:
            css = "form-control"
        if self.errors:
            css += " is-invalid"
        attrs["class"] = f"{attrs.get('class', '')} {css}".strip()
        return attrs

    def label_tag(self, contents=None, attrs=None, label_suffix=None, tag=None):
        css = "form-check-label" if self.is_checkbox else "form-label"
        return super().label_tag(contents, {"class": css, **(attrs or {})}, label_suffix, tag)

    @property
    def is_required(self) -> bool:
        return self.field.required or bool(self.field.widget.attrs.get("required"))

    @property
    def secret_set(self) -> bool | None:
        """For a secret's input: whether the provider has that secret stored; else None."""
        return getattr(self.form, "secrets_set", {}).get(self.name)

    @property
    def clear_field(self) -> forms.BoundField | None:
        """The "clear" checkbox that goes with a secret's input, if it has one."""
        name = f"clear_{self.name}"
        return self.form[name] if name in self.form.fields else None


class PageForm(forms.Form):
    bound_field_class = BootstrapBoundField
    label_suffix = ""


def _secret_input(label: str) -> forms.CharField:
    # render_value=False: a secret is never sent back to the browser, not even after an error.
    return forms.CharField(
        label=label,
        required=False,
        strip=False,
        max_length=MAX_SECRET_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


class ProviderForm(PageForm):
    """Name, enabled, and the settings and secrets of `kind` (KINDS in provider_settings);
    `config` is the provider being edited, None when adding one."""

    kind: str = ""
    name = forms.CharField(max_length=100, help_text="Shown in lists; requests may name it.")
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled (used for sending)")

    def __init__(self, *args: Any, config: ProviderConfig | None = None, **kwargs: Any) -> None:
        if config is not None and "initial" not in kwargs:
            kwargs["initial"] = {"name": config.name, "enabled": config.enabled, **config.settings}
        super().__init__(*args, **kwargs)
        self.config = config
        spec = KINDS[self.kind]
        self.setting_names = [o.name for o in spec.settings]
        self.secret_names = [o.name for o in spec.secrets]
        stored = set(config.secret_names) if config is not None else set()
        # Set or not set, shown beside each secret when editing (adding, nothing is stored).
        self.secrets_set = {n: n in stored for n in self.secret_names} if config else {}
        self._leave_required_to_services(spec, adding=config is None)
        for option in spec.secrets:
            field = self.fields[option.name]
            if option.name in stored:
                field.help_text = "Stored. Leave blank to keep it, or type a new value."
                if not option.required:  # a required secret can only be replaced
                    self.fields[f"clear_{option.name}"] = forms.BooleanField(
                        required=False, label=f"Clear the stored {field.label.lower()}"
                    )

    def _leave_required_to_services(self, spec, *, adding: bool) -> None:
        """The services judge what is missing, together with everything else: one round trip
        shows every problem. The browser still sees `required` on what the kind needs (adding:
        a required secret too; editing: a blank secret keeps the stored one)."""
        needed = {"name"} | {o.name for o in spec.settings if o.required}
        if adding:
            needed |= {o.name for o in spec.secrets if o.required}
        for name, field in self.fields.items():
            if isinstance(field, forms.ChoiceField):
                continue  # a select always sends one of its choices
            field.required = False
            if name in needed:
                field.widget.attrs["required"] = True

    def clean(self) -> dict:
        cleaned = super().clean()
        for name in self.secret_names:
            if cleaned.get(name) and cleaned.get(f"clear_{name}"):
                self.add_error(name, "Type a new value or tick clear, not both.")
        return cleaned

    @property
    def groups(self) -> list[tuple[str, list[forms.BoundField]]]:
        """The fields as the page shows them, in fieldsets."""
        return [
            ("Provider", [self["name"], self["enabled"]]),
            ("Settings", [self[name] for name in self.setting_names]),
            ("Secrets (write-only)", [self[name] for name in self.secret_names]),
        ]

    def settings_data(self) -> dict[str, Any]:
        """The settings to store; blanks are left out so the kind's defaults apply."""
        values = {name: self.cleaned_data.get(name) for name in self.setting_names}
        return {name: value for name, value in values.items() if value not in (None, "")}

    def secrets_data(self) -> dict[str, str]:
        """Typed secrets, and "" for each one to clear (the services read "" as removal)."""
        changes = {n: self.cleaned_data[n] for n in self.secret_names if self.cleaned_data.get(n)}
        for name in self.secret_names:
            if self.cleaned_data.get(f"clear_{name}"):
                changes[name] = ""
        return changes

    def add_service_errors(self, error: ProviderSettingsError) -> None:
        """Put each of the services' errors ("settings.host": [...]) beside its field."""
        for key, messages in error.errors.items():
            name = key.partition(".")[2] or key
            target = name if name in self.fields else None
            for message in messages:
                text = message[:1].upper() + message[1:]
                self.add_error(target, text if target else f"{key}: {message}")


class SmtpForm(ProviderForm):
    kind = "smtp"
    host = forms.CharField(max_length=255, help_text="The server's name, like smtp.example.com.")
    port = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=65535,
        help_text="Leave blank for 587 (465 with SSL/TLS).",
    )
    security = forms.ChoiceField(
        choices=[
            ("starttls", "STARTTLS (usually port 587)"),
            ("ssl", "SSL/TLS from the start (usually port 465)"),
            ("none", "None: plain text (only on a trusted network)"),
        ],
        initial="starttls",
    )
    username = _secret_input("Username")
    password = _secret_input("Password")


class SesForm(ProviderForm):
    kind = "ses"
    region = forms.CharField(label="AWS region", max_length=50, help_text="Like eu-west-1.")
    endpoint_url = forms.CharField(
        label="Endpoint URL",
        required=False,
        max_length=2048,
        help_text="Only for an SES-compatible API; leave blank for AWS.",
    )
    access_key_id = _secret_input("Access key ID")
    secret_access_key = _secret_input("Secret access key")


class SendGridForm(ProviderForm):
    kind = "sendgrid"
    host = forms.CharField(
        label="API host",
        required=False,
        max_length=2048,
        help_text="Leave blank for https://api.sendgrid.com; the EU host is "
        "https://api.eu.sendgrid.com.",
    )
    api_key = _secret_input("API key")


PROVIDER_FORMS: dict[str, type[ProviderForm]] = {
    form.kind: form for form in (SmtpForm, SesForm, SendGridForm)
}
# The choices of the "add a provider" page: (kind, preset or "", label, what it needs).
NOTES = {
    "smtp": "Any SMTP server: host, port, security, and a username and password if it wants them.",
    "ses": "Amazon Simple Email Service: a region and an access key.",
    "sendgrid": "SendGrid's Web API: an API key.",
    "gmail": "SMTP with Gmail's server filled in: your address and an app password.",
}
ADD_CHOICES = [(kind, "", spec.label, NOTES.get(kind, "")) for kind, spec in KINDS.items()] + [
    (preset["kind"], name, preset["label"], NOTES.get(name, "")) for name, preset in PRESETS.items()
]


def preset_initial(name: str, *, kind: str) -> dict[str, Any] | None:
    """Initial form values for a preset ("gmail") of this kind, or None if there is none."""
    preset = PRESETS.get(name)
    if preset is None or preset["kind"] != kind:
        return None
    return {"name": preset["label"].split(" ")[0], "enabled": True, **preset["settings"]}


class ProviderTestForm(PageForm):
    to = forms.CharField(
        label="Send the test message to",
        max_length=320,
        help_text="Nothing is stored: the result shows on the providers page.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )

    def clean_to(self) -> str:
        to = self.cleaned_data["to"].strip()
        if problem := check_address(to):
            raise forms.ValidationError(problem)
        return to


class TokenForm(PageForm):
    name = forms.CharField(
        label="Token name",
        max_length=100,
        help_text="What the token is for, like 'billing app'.",
    )
