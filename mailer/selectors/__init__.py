"""Reads: what pages and the API show. Caching of list pages lives here only."""

from .health import system_health

__all__ = ["system_health"]
