"""The page of a list the selectors hand out: where it sits among the pages, or, for a keyset
page (mailer.selectors.cursors), the cursor after it. Shared by every paged list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Page:
    """One page of a list and where it sits among the pages (numbered from 1); or a keyset
    page (`number` None), which knows only the cursor after it."""

    count: int
    number: int | None
    size: int
    results: list[dict[str, Any]]
    exact: bool = True  # whether count is exact (an email list's large count may lag)
    next_cursor: str | None = None

    @property
    def last(self) -> int:
        """The last page's number: 1 for an empty list, which still has its (empty) page."""
        return max(1, -(-self.count // self.size))

    @property
    def exists(self) -> bool:
        return self.number is None or 1 <= self.number <= self.last

    @property
    def has_next(self) -> bool:
        if self.number is None:
            return self.next_cursor is not None
        return self.number < self.last

    @property
    def has_previous(self) -> bool:
        return self.number is not None and self.number > 1

    @property
    def next_number(self) -> int | None:
        return self.number + 1 if self.number is not None and self.has_next else None

    @property
    def previous_number(self) -> int | None:
        return self.number - 1 if self.has_previous else None


def numbered_page(
    rows: Any,
    *,
    page: int,
    page_size: int,
    most: int,
    show: Callable[[Any], dict[str, Any]],
    clamp: bool = False,
) -> Page:
    """Page `page` of an ordered queryset `rows` (`page_size` a page, at most `most`), each row
    shown by `show`: the small lists' paging (templates, suppressions, webhook messages), whose
    counts are cheap. With `clamp`, a page past the end is the last page instead."""
    size = max(1, min(page_size, most))
    count = rows.count()
    number = max(1, page)
    if clamp:
        number = min(number, max(1, -(-count // size)))
    offset = (number - 1) * size
    return Page(count, number, size, [show(row) for row in rows[offset : offset + size]])
