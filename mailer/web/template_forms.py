"""The template page's form: a template's name and parts, and sample variables for the live
preview (not saved). The services judge every field; the form only bounds sizes."""

from __future__ import annotations

from django import forms

from mailer.templating import MAX_BODY_SOURCE_CHARS, MAX_SUBJECT_SOURCE_CHARS, MAX_VARIABLES_BYTES

from .forms import PageForm

_CODE = {"autocomplete": "off", "spellcheck": "false"}


class TemplateForm(PageForm, forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=100,
        widget=forms.TextInput(attrs=_CODE),
        help_text="How a send names it: lower-case letters, digits, <code>.</code>, "
        "<code>_</code> and <code>-</code>, like <code>order-shipped</code>.",
    )
    subject = forms.CharField(
        label="Subject",
        max_length=MAX_SUBJECT_SOURCE_CHARS,
        widget=forms.TextInput(attrs=_CODE),
        help_text="One line, e.g. <code>Welcome, {{ first_name }}!</code>",
    )
    text = forms.CharField(
        label="Text part",
        required=False,
        max_length=MAX_BODY_SOURCE_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={**_CODE, "rows": 8}),
    )
    html = forms.CharField(
        label="HTML part",
        required=False,
        max_length=MAX_BODY_SOURCE_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={**_CODE, "rows": 10}),
        help_text="Variables are HTML-escaped here (<code>|safe</code> opts out); the text "
        "part and the subject are left as they are. Give a text part, an HTML part or both.",
    )
    variables = forms.CharField(
        label="Sample variables (JSON)",
        required=False,
        max_length=MAX_VARIABLES_BYTES,
        strip=False,
        widget=forms.Textarea(attrs={**_CODE, "rows": 5}),
        help_text="For the preview only, not saved: a JSON object, like "
        '<code>{"first_name": "Ann"}</code>. A send gives its own.',
    )
