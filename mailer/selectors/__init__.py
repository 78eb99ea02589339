"""Reads: what pages and the API show. Caching of list pages lives here only."""

from .email_lists import email_list, email_page
from .emails import email_detail, email_get, email_texts
from .health import system_health
from .pages import Page
from .providers import (
    circuit_dict,
    provider_choices,
    provider_detail,
    provider_get,
    provider_list,
    provider_resolve,
    provider_test_addresses,
)
from .templates import (
    template_detail,
    template_get,
    template_list,
    template_names,
    template_summary,
)

__all__ = [
    "Page",
    "circuit_dict",
    "email_detail",
    "email_get",
    "email_list",
    "email_page",
    "email_texts",
    "provider_choices",
    "provider_detail",
    "provider_get",
    "provider_list",
    "provider_resolve",
    "provider_test_addresses",
    "system_health",
    "template_detail",
    "template_get",
    "template_list",
    "template_names",
    "template_summary",
]
