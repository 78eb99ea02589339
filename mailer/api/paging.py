"""The answer of every paged API list: {count, page, page_size, next, previous, results}, with
next/previous as absolute URLs keeping the request's other query parameters."""

from __future__ import annotations

from typing import Any


def page_url(request, page: int | None) -> str | None:
    if page is None:
        return None
    query = request.GET.copy()
    query["page"] = str(page)
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def page_answer(request, page) -> dict[str, Any]:
    """`page`: anything with count, number, size, next_number, previous_number and results
    (the selectors' pages)."""
    return {
        "count": page.count,
        "page": page.number,
        "page_size": page.size,
        "next": page_url(request, page.next_number),
        "previous": page_url(request, page.previous_number),
        "results": page.results,
    }
