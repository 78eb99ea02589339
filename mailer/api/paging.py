"""The answer of every paged API list: {count, page, page_size, next, previous, results}, with
next/previous as absolute URLs keeping the request's other query parameters (and, for the email
list, count_exact and next_cursor)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode


def page_url(request, value: int | str | None, *, name: str = "page") -> str | None:
    """This request's URL with `name` (the page number, or the cursor) set to `value`, where
    it was or else last, the other parameters as they came; None for None (no such page)."""
    if value is None:
        return None
    pairs, placed = [], False
    for key, values in request.GET.lists():
        if key != name:
            pairs += [(key, each) for each in values]
        elif not placed:
            pairs.append((key, str(value)))
            placed = True
    if not placed:
        pairs.append((name, str(value)))
    return f"{_here(request)}?{urlencode(pairs)}"


def _here(request) -> str:
    """The request's absolute URL without its query (worked out once per request)."""
    here = getattr(request, "_absolute_path", None)
    if here is None:
        here = request._absolute_path = request.build_absolute_uri(request.path)
    return here


def page_answer(request, page) -> dict[str, Any]:
    """`page`: a selectors' Page. A keyset page (number None, with next_cursor) links on by cursor
    and not back; an email list's page also says whether its count is exact."""
    if page.number is None:
        following = page_url(request, page.next_cursor, name="cursor")
        preceding = None
    else:
        following = page_url(request, page.next_number)
        preceding = page_url(request, page.previous_number)
    return {
        "count": page.count,
        "count_exact": page.exact,
        "page": page.number,
        "page_size": page.size,
        "next": following,
        "previous": preceding,
        "next_cursor": page.next_cursor,
        "results": page.results,
    }
