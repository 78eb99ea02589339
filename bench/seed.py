"""Build the list benchmark's database: migrate, then one account with ROWS sent emails, inserted
by a single INSERT ... SELECT over a recursive CTE (SQLite), so a million rows take seconds.

Run by bench.run in a subprocess: python -m bench.seed ROWS, with SQLITE_PATH naming the file and
DJANGO_SETTINGS_MODULE=bench.settings. Prints one JSON line: {rows, seconds, account}.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta

SEED_VERSION = 1  # bump when the seeded rows change shape: cached seed files are then rebuilt
ACCOUNT = "lister"


def seed(rows: int) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, transaction

    from harness.factories import make_account, make_smtp_provider
    from mailer.models import Email, EmailStatus

    call_command("migrate", "--noinput", verbosity=0)
    account = make_account(ACCOUNT)
    config = make_smtp_provider(account, 25)
    start = datetime.now(UTC) - timedelta(seconds=rows + 3600)
    template = Email(
        account=account,
        from_email="Bench <bench@example.com>",
        to=["rcpt@example.org"],
        subject="Seeded",
        text="Hello from the seed.",
        status=EmailStatus.SENT,
        sent_via=config,
        requested_provider=None,
        sent_via_kind="smtp",
        provider_message_id="",
        message_id="",
    )
    # Every column from the model, so the insert follows migrations: constants are bound as the
    # ORM would store them; the rest vary with n (a new second per email, oldest first).
    varying = {
        "subject": "'Seeded email ' || n",
        "message_id": "'<seed-' || n || '@bench.invalid>'",
        "provider_message_id": "'seed-' || n",
        "created_at": "datetime(%s, '+' || n || ' seconds')",
        "updated_at": "datetime(%s, '+' || n || ' seconds')",
        "sent_at": "datetime(%s, '+' || n || ' seconds')",
    }
    base = start.replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")
    columns, expressions, params = [], [], []
    for field in Email._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(connection.ops.quote_name(field.column))
        if field.name in varying:
            expressions.append(varying[field.name])
            params += [base] * varying[field.name].count("%s")
        else:
            expressions.append("%s")
            params.append(field.get_db_prep_save(getattr(template, field.attname), connection))
    sql = (
        f"INSERT INTO {Email._meta.db_table} ({', '.join(columns)}) "
        "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < %s) "
        f"SELECT {', '.join(expressions)} FROM seq"
    )
    clock = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA synchronous=OFF")
        with transaction.atomic():
            cursor.execute(sql, [rows, *params])
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    seconds = time.perf_counter() - clock
    connection.close()
    return {"rows": rows, "seconds": round(seconds, 2), "account": ACCOUNT}


if __name__ == "__main__":
    print(json.dumps(seed(int(sys.argv[1]))))
