"""Keyset positions in a list ordered newest first, and the opaque cursors that carry them.

A position is the (created_at, id) of the last row a client was given. The next page is the rows
strictly after it in (created_at desc, id desc) order: an index seek, however deep, where an
OFFSET walks every row it skips. And stable: a row's position never changes, so an email stored
during a walk (it lands before the walk's position, or wherever its created_at puts it) never
makes the walk skip or repeat one stored before.

The cursor is that position as unpadded urlsafe base64 of "<microseconds since the epoch>.<id>"
(created_at is stored to the microsecond on SQLite and PostgreSQL alike). It is not signed, and
needs not be: the query it continues is always filtered by the requesting account, so a
forged cursor is only another position in the caller's own list. It is validated strictly
(alphabet, length, the canonical encoding, the ranges), and a bad one is a ValueError saying so:
never a database error.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import Q, QuerySet

MAX_CURSOR_CHARS = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_MICROS = (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC) - _EPOCH) // timedelta(
    microseconds=1
)
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+", re.ASCII)
_PAYLOAD = re.compile(rb"(0|[1-9][0-9]{0,17})\.([1-9][0-9]{0,18})")
_NOT_OURS = (
    "Not a cursor this API gave out: pass the next_cursor of a list answer (or follow its "
    "next link) unchanged."
)


@dataclass(frozen=True)
class Position:
    """Where a keyset page starts: after the row with this created_at and id."""

    created_at: datetime
    id: int

    @classmethod
    def of(cls, row: dict) -> Position:
        """The position after a list row (a summary with created_at and id)."""
        return cls(row["created_at"], row["id"])

    @property
    def micros(self) -> int:
        return (self.created_at - _EPOCH) // timedelta(microseconds=1)

    @property
    def key(self) -> str:
        """The position as text, for cache keys."""
        return f"{self.micros}.{self.id}"

    def cursor(self) -> str:
        """The opaque cursor of this position."""
        return base64.urlsafe_b64encode(self.key.encode()).rstrip(b"=").decode()

    def after(self, emails: QuerySet) -> QuerySet:
        """The rows of `emails` after this position, newest first. The bound on created_at
        alone lets the (account, -created_at, -id) index seek; the OR settles equal
        timestamps by id."""
        at = self.created_at
        return emails.filter(Q(created_at__lt=at) | Q(created_at=at, id__lt=self.id)).filter(
            created_at__lte=at
        )

    def params(self) -> list:
        """after()'s parameters in its SQL's order, as the ORM passes them."""
        from mailer.models import Email

        at = Email._meta.get_field("created_at").get_db_prep_value(self.created_at, connection)
        return [at, at, self.id, at]


def decode(text: str) -> Position:
    """The position a cursor carries; ValueError saying why for anything else."""
    if len(text) > MAX_CURSOR_CHARS:
        raise ValueError(f"A cursor is at most {MAX_CURSOR_CHARS} characters. {_NOT_OURS}")
    if not _ALPHABET.fullmatch(text):
        raise ValueError(f"A cursor holds only ASCII letters, digits, '-' and '_'. {_NOT_OURS}")
    try:
        payload = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(_NOT_OURS) from None
    found = _PAYLOAD.fullmatch(payload)
    if found is None or int(found[1]) > _MAX_MICROS or int(found[2]) > 2**63 - 1:
        raise ValueError(_NOT_OURS)
    position = Position(_EPOCH + timedelta(microseconds=int(found[1])), int(found[2]))
    if position.cursor() != text:  # one encoding per position: no padding, no stray bits
        raise ValueError(_NOT_OURS)
    return position
