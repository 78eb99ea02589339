"""Queries compiled once per shape and database connection, then run with each call's values.

Building a queryset and compiling it to SQL cost the email list more than running it: on SQLite
a page of ten rows ran in ~0.15 ms and took ~0.5 ms more to build and compile through the ORM,
on every page not in the cache (bench item 2, in process). `rows` compiles a values() queryset
the first time its shape (`key`) runs on a connection, keeps the SQL on that connection, and from
then on runs that SQL with the call's own parameters; Django's own converters turn the database's
values into what the ORM would return (datetimes, JSON, booleans).

The caller gives the parameters, in the order the SQL takes them. The first run of a shape checks
both against the ORM: the ORM's parameters must be the caller's, and the compiled statement's rows
the ORM's. If the parameters differ, or the rows do three times (once may be a write landing
between the two reads), that shape goes through the ORM every time from then on, with a warning
logged. A statement can't return other rows than the ORM would; at worst it saves nothing.
LIMIT and OFFSET are the statement's last two parameters (the same SQL on SQLite and
PostgreSQL), so a shape doesn't depend on where a page is.

A connection keeps at most MAX_SHAPES shapes, the least recently used dropped first: some shapes
depend on what a request holds (a webhook's batch of up to 1,000 message ids is a shape per
batch size), and an account must not be able to grow a worker's memory by posting batches of
every size. A dropped shape is compiled and checked again when it comes back. The warning names
the shape and how many parameters each side had, never their values (a webhook token is one).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model, QuerySet

logger = logging.getLogger(__name__)

_CHECKS = 3  # a shape whose rows differed this many times goes through the ORM
MAX_SHAPES = 128  # per connection (see above)


class _Compiled:
    def __init__(self, queryset: QuerySet) -> None:
        self.compiler = queryset.query.get_compiler(using=queryset.db)
        self.sql, self.params = self.compiler.as_sql()
        columns = [selected[0] for selected in self.compiler.select[: self.compiler.col_count]]
        self.converters = self.compiler.get_converters(columns)
        query = queryset.query
        self.names = list(query.selected or ()) or [
            *query.extra_select, *query.values_select, *query.annotation_select
        ]  # fmt: skip

    def run(self, params: Sequence[Any], limit: int | None, offset: int) -> list[dict]:
        sql, every = self.sql, list(params)
        if limit is not None:
            sql, every = f"{sql} LIMIT %s OFFSET %s", [*every, limit, offset]
        with self.compiler.connection.cursor() as cursor:
            cursor.execute(sql, every)
            found = cursor.fetchall()
        if self.converters:
            found = self.compiler.apply_converters(found, self.converters)
        names = self.names
        return [dict(zip(names, row, strict=True)) for row in found]


def _through_orm(queryset: QuerySet, limit: int | None, offset: int) -> list[dict]:
    return list(queryset[offset : offset + limit] if limit is not None else queryset[offset:])


def rows(
    key: Hashable,
    build: Callable[[], QuerySet],
    params: Sequence[Any],
    *,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict]:
    """The rows of build()[offset:offset + limit] (all from offset if limit is None), as dicts.

    build: a values() queryset of this shape, ordered, unsliced (called only the first time the
    shape runs on this connection, and again for a shape that failed its check). params: its
    parameters in SQL order, as the ORM would pass them (adapted: e.g. a datetime as the
    backend's adapt_datetimefield_value makes it). key: the shape: every call with the same key
    must build the same SQL text.
    """
    connection = connections[DEFAULT_DB_ALIAS]
    kept = connection.__dict__.setdefault("_mailer_statements", OrderedDict())
    compiled = kept.get(key, 0)
    if key in kept:
        kept.move_to_end(key)
    if isinstance(compiled, _Compiled):
        return compiled.run(params, limit, offset)
    if compiled >= _CHECKS:
        return _through_orm(build(), limit, offset)
    return _check(kept, key, build(), params, limit, offset)


def instances(
    key: Hashable,
    model: type[Model],
    build: Callable[[], QuerySet],
    params: Sequence[Any],
    *,
    limit: int | None = None,
) -> list[Model]:
    """rows() for a queryset of `model`: its instances, as the ORM makes them (every concrete
    field loaded). build: the queryset, unsliced, with no values() of its own."""
    names = [field.attname for field in model._meta.concrete_fields]
    found = rows(key, lambda: build().values(*names), params, limit=limit)
    return [model.from_db(DEFAULT_DB_ALIAS, names, [row[n] for n in names]) for row in found]


def _check(
    kept: dict, key: Hashable, queryset: QuerySet, params: Sequence[Any], limit, offset
) -> list[dict]:
    """A run of a shape not yet compiled: through the ORM, and compiled if the check holds
    (see above)."""
    expected = _through_orm(queryset, limit, offset)
    compiled = _Compiled(queryset)
    problem = None
    if list(compiled.params) != list(params):
        kept[key] = _CHECKS
        problem = (f"the ORM's parameters are not the caller's ({len(compiled.params)} and "
                   f"{len(params)} values)")  # fmt: skip
    elif compiled.run(params, limit, offset) != expected:
        kept[key] = kept.get(key, 0) + 1
        problem = f"the compiled statement's rows are not the ORM's ({kept[key]} of {_CHECKS})"
    else:
        kept[key] = compiled
    while len(kept) > MAX_SHAPES:
        kept.popitem(last=False)
    if problem is None:
        return expected
    logger.warning("query %r not compiled once (it ran through the ORM): %s", key, problem)
    return expected
