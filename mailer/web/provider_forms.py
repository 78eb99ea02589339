"""Forms of the provider pages: one form per provider kind (secrets write-only), and the
test send's."""

from __future__ import annotations

from typing import Any

from django import forms

from mailer.models import ProviderConfig
from mailer.provider_settings import KINDS, MAX_SECRET_LENGTH, PRESETS

from .forms import PageForm


def _secret_input(label: str) -> forms.CharField:
    # render_value=False: a secret is never sent back to the browser, not even after an error.
    return forms.CharField(
        label=label,
        required=False,
        strip=False,
        max_length=MAX_SECRET_LENGTH,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )


class ProviderForm(PageForm, forms.Form):
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


class ProviderTestForm(PageForm, forms.Form):
    # Checked with the sender by selectors.provider_test_addresses, which also fills it in.
    to = forms.CharField(
        label="Send the test message to",
        required=False,
        max_length=320,
        help_text="Your account's address if left blank. Nothing is stored: the result shows "
        "on the providers page.",
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
