"""The one base of every page's form: Bootstrap's classes on each field (laid out by
templates/forms/_field.html), the error summary above a form (templates/forms/_errors.html),
and the pages' one map from application errors to form errors."""

from __future__ import annotations

from typing import Any

from django import forms

from mailer.errors import AppError
from mailer.templating import MAX_VARIABLES_BYTES
from mailer.validation import parse_json


class BootstrapBoundField(forms.BoundField):
    """Renders with Bootstrap's classes; Django adds aria-invalid and aria-describedby."""

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

    @property
    def is_required(self) -> bool:
        """Required, by the form or (where the services judge it) by the browser's check."""
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


class PageForm:
    """Mixed into every page's form, a forms.Form or one of Django's auth forms."""

    bound_field_class = BootstrapBoundField
    # The services' names for fields this form names otherwise ("from" -> "from_email").
    service_fields: dict[str, str] = {}

    @property
    def fields_with_errors(self) -> list:
        """The visible fields that have errors, in form order (for the error summary)."""
        return [field for field in self.visible_fields() if field.errors]

    @property
    def other_errors(self) -> list[str]:
        """Errors not shown beside a visible field: the form's own and hidden fields'."""
        hidden = [error for field in self.hidden_fields() for error in field.errors]
        return [*self.non_field_errors(), *hidden]

    def add_app_error(self, error: AppError) -> None:
        """The pages' answer to an application error: each of its field errors beside that
        field (the services' "settings.host" is the field "host"), the rest above the form,
        named by their field unless they are a sentence of their own."""
        if not error.errors:
            self.add_error(None, error.message)
        for key, messages in error.errors.items():
            name = self.service_fields.get(key, key.rpartition(".")[2])
            field = name if name in self.fields else None
            for message in messages:
                if field is not None:
                    self.add_error(field, message[:1].upper() + message[1:])
                else:
                    self.add_error(None, message if message[:1].isupper() else f"{key}: {message}")


def template_variables(raw: str) -> dict[str, Any]:
    """A template's variables as typed on a page (the send form, the template preview): {}
    when blank, else a JSON object of at most MAX_VARIABLES_BYTES. ValueError says what is
    wrong, for the caller to show beside the field (too deep nesting included: never a
    RecursionError)."""
    text = raw.strip()
    if not text:
        return {}
    if len(text.encode("utf-8", "replace")) > MAX_VARIABLES_BYTES:
        raise ValueError(f"May be at most {MAX_VARIABLES_BYTES} bytes.")
    try:
        variables = parse_json(text)
    except ValueError as exc:
        message = str(exc).replace("The JSON body is", "This JSON is")
        raise ValueError(message.replace("The body is", "This is")) from None
    if not isinstance(variables, dict):
        raise ValueError('Give a JSON object: {"name": value, ...}.')
    return variables
