"""Reads: what pages and the API show. Caching of list pages lives here only."""

from .emails import email_detail, email_get, email_list, email_texts
from .health import system_health
from .providers import (
    circuit_dict,
    provider_choices,
    provider_detail,
    provider_get,
    provider_list,
    provider_resolve,
)

__all__ = [
    "circuit_dict",
    "email_detail",
    "email_get",
    "email_list",
    "email_texts",
    "provider_choices",
    "provider_detail",
    "provider_get",
    "provider_list",
    "provider_resolve",
    "system_health",
]
