"""Forms of the provider pages: one form per provider kind, generated from its spec (secrets
write-only), and the test send's."""

from __future__ import annotations

from typing import Any

from django import forms

from mailer.models import ProviderConfig
from mailer.provider_settings import LIMIT_MOST
from mailer.providers import specs
from mailer.providers.spec import MAX_SECRET_LENGTH, KindSpec, Option

from .forms import PageForm

LIMITS = ("max_per_second", "max_per_day")


def _limit_input(name: str, label: str, help_text: str) -> forms.IntegerField:
    """A pacing limit: a whole number from 1, or blank for none (the services judge it too)."""
    return forms.IntegerField(
        label=label,
        required=False,
        min_value=1,
        max_value=LIMIT_MOST[name],
        help_text=help_text,
    )


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
    """Name, enabled, and the settings and secrets of `kind` (its spec, mailer.providers);
    `config` is the provider being edited, None when adding one."""

    kind: str = ""
    name = forms.CharField(max_length=100, help_text="Shown in lists; requests may name it.")
    enabled = forms.BooleanField(required=False, initial=True, label="Enabled (used for sending)")
    max_per_second = _limit_input(
        "max_per_second",
        "Max per second",
        "At most this many in any one second, across every process. Blank: no limit.",
    )
    max_per_day = _limit_input(
        "max_per_day",
        "Max per day",
        "At most this many in any 24 hours (counted by the hour), e.g. a daily sending quota. "
        "Blank: no limit.",
    )

    def __init__(self, *args: Any, config: ProviderConfig | None = None, **kwargs: Any) -> None:
        if config is not None and "initial" not in kwargs:
            limits = {name: getattr(config, name) for name in LIMITS}
            kwargs["initial"] = {
                "name": config.name,
                "enabled": config.enabled,
                **limits,
                **config.settings,
            }
        super().__init__(*args, **kwargs)
        self.config = config
        spec = specs()[self.kind]
        self.setting_names = [o.name for o in spec.settings]
        self.secret_names = [o.name for o in spec.secrets]
        stored = set(config.secret_names) if config is not None else set()
        # Set or not set, shown beside each secret when editing (adding, nothing is stored).
        self.secrets_set = {n: n in stored for n in self.secret_names} if config else {}
        self._leave_required_to_services(spec, adding=config is None)
        if spec.counts_recipients:  # SES: its quota is in recipients
            counted = f" {spec.label} counts each recipient, not each email."
            for name in LIMITS:
                self.fields[name].help_text += counted
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
            ("Pacing", [self[name] for name in LIMITS]),
        ]

    def limits_data(self) -> dict[str, int | None]:
        """Both pacing limits; None (a blank) is no limit, and removes a stored one."""
        return {name: self.cleaned_data.get(name) for name in LIMITS}

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


def _setting_field(option: Option) -> forms.Field:
    """A page field for one setting of a spec: the services clean it, with everything else."""
    common = {"label": option.title, "help_text": option.help, "required": option.required}
    if option.field == "choice":
        default = option.default if isinstance(option.default, str) else option.choices[0][0]
        return forms.ChoiceField(choices=option.choices, initial=default, **common)
    if option.field == "number":
        return forms.IntegerField(min_value=1, max_value=65535, **common)
    return forms.CharField(max_length=option.max_length, **common)


def form_for(spec: KindSpec) -> type[ProviderForm]:
    """The page form of a kind, generated from its spec: its settings, then its secrets."""
    fields: dict[str, forms.Field] = {o.name: _setting_field(o) for o in spec.settings}
    fields |= {o.name: _secret_input(o.title) for o in spec.secrets}
    name = f"{spec.kind.title().replace('_', '')}Form"
    return type(name, (ProviderForm,), {"kind": spec.kind, **fields})


PROVIDER_FORMS: dict[str, type[ProviderForm]] = {
    kind: form_for(spec) for kind, spec in specs().items()
}
# The choices of the "add a provider" page: (kind, preset or "", label, what it needs).
ADD_CHOICES = [(kind, "", spec.label, spec.note) for kind, spec in specs().items()] + [
    (kind, preset.name, preset.label, preset.note)
    for kind, spec in specs().items()
    for preset in spec.presets
]


def preset_initial(name: str, *, kind: str) -> dict[str, Any] | None:
    """Initial form values for a preset ("gmail") of this kind, or None if there is none."""
    spec = specs().get(kind)
    preset = next((p for p in spec.presets if p.name == name), None) if spec else None
    if preset is None:
        return None
    return {"name": preset.label.split(" ")[0], "enabled": True, **preset.settings}


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
