"""Accounts, API tokens, providers and emails for tests and the bench, made through the app's
own services; and the same as a command for live servers, run with the server's environment:

    python -m harness.factories account ann [--password P] [--staff] [--token NAME]
                                            [--smtp-port N]          -> {"id", "username", "token"}
    python -m harness.factories token ann [--name NAME]                -> {"token"}
    python -m harness.factories provider ann smtp --smtp-port N [--name sink] [--priority P]
    python -m harness.factories provider ann sendgrid --settings JSON --secrets JSON
                                                                     -> {"id", "name"}
    python -m harness.factories email ann [--subject S] [--send] [--lease-expired]
                                                                     -> {"id", "status", ...}
    python -m harness.factories rows mailer.Email pk=3 [--fields a,b] -> [{...}, ...]

Each prints one line of JSON. Needs Django settings (DJANGO_SETTINGS_MODULE) to be importable.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta

LOOPBACK = "127.0.0.1"


def loopback_smtp(port: int, **settings) -> dict:
    """The settings of an SMTP provider on loopback without TLS: every sink and stand-in's."""
    return {"host": LOOPBACK, "port": port, "security": "none", **settings}


def outgoing(**overrides):
    """A valid email to send (mailer.validation.OutgoingEmail); override any field."""
    from mailer.validation import OutgoingEmail

    fields = {
        "from_email": "Sender <sender@example.com>",
        "to": ["rcpt@example.org"],
        "subject": "Hello",
        "text": "Hello there.",
    }
    fields.update(overrides)
    return OutgoingEmail(**fields)


def make_account(username: str, *, password: str | None = None, staff: bool = False, **fields):
    """A user (email username@example.com unless given); staff=True makes a superuser."""
    from django.contrib.auth import get_user_model

    fields.setdefault("email", f"{username}@example.com")
    if staff:
        fields.update(is_staff=True, is_superuser=True)
    return get_user_model().objects.create_user(username, password=password, **fields)


def make_token(account, name: str = "tests") -> str:
    """A new API token of the account; the raw token (shown once)."""
    from mailer.services import token_create

    return token_create(account=account, name=name)[1]


def make_provider(
    account,
    kind: str,
    *,
    name: str | None = None,
    settings: dict | None = None,
    secrets: dict | None = None,
    **options,
):
    """A provider config through the service the API and pages call (options: priority,
    enabled, ...). The name defaults to kind-N, N counting the account's providers."""
    from mailer.services import provider_config_create

    if name is None:
        name = f"{kind}-{account.provider_configs.count() + 1}"
    return provider_config_create(
        account=account,
        kind=kind,
        name=name,
        settings=settings or {},
        secrets=secrets or {},
        **options,
    )


def make_smtp_provider(account, port: int, *, name: str = "sink", **options):
    """An SMTP provider on 127.0.0.1:port without TLS (options as make_provider's). Trusted,
    as an operator's own sink: loopback is allowed whatever ALLOW_PRIVATE_PROVIDER_HOSTS says."""
    settings = loopback_smtp(port, **options.pop("settings", {}))
    options.setdefault("trusted", True)
    return make_provider(account, "smtp", name=name, settings=settings, **options)


def make_email(account, *, send: bool = False, lease_expired: bool = False, **fields):
    """An email of the account (fields: outgoing()'s). send=True sends it as the API does (sync
    mode: sent or failed in this call); otherwise it is stored `sending` and claimed for its first
    try, as a request leaves it when its worker dies mid-send; lease_expired=True then ends that
    claim's lease a second ago, so the next sweep takes it back."""
    from mailer.models import Email
    from mailer.services import email_create, email_send

    message = outgoing(**fields)
    if send:
        return email_send(account=account, outgoing=message).email
    email, _ = email_create(account=account, outgoing=message)
    if lease_expired:
        from django.utils import timezone

        email.lease_expires_at = timezone.now() - timedelta(seconds=1)
        Email.objects.filter(pk=email.pk).update(lease_expires_at=email.lease_expires_at)
    return email


# The command --------------------------------------------------------------------------------


def _account(username: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


def _cmd_account(args) -> dict:
    user = make_account(args.username, password=args.password, staff=args.staff)
    if args.smtp_port is not None:
        make_smtp_provider(user, args.smtp_port)
    token = make_token(user, args.token) if args.token else None
    return {"id": user.pk, "username": user.username, "token": token}


def _cmd_token(args) -> dict:
    return {"token": make_token(_account(args.username), args.name)}


def _cmd_provider(args) -> dict:
    account = _account(args.username)
    options = {"priority": args.priority} if args.priority is not None else {}
    if args.smtp_port is not None:
        config = make_smtp_provider(account, args.smtp_port, name=args.name or "sink", **options)
    else:
        config = make_provider(
            account, args.kind, name=args.name, settings=json.loads(args.settings or "{}"),
            secrets=json.loads(args.secrets or "{}"), **options,
        )  # fmt: skip
    return {"id": config.pk, "name": config.name}


def _cmd_email(args) -> dict:
    fields = {"subject": args.subject, "from_email": args.from_email, "to": [args.to]}
    email = make_email(
        _account(args.username), send=args.send, lease_expired=args.lease_expired, **fields
    )
    return {"id": email.pk, "status": email.status, "lease_expires_at": email.lease_expires_at}


def _cmd_rows(args) -> list[dict]:
    from django.apps import apps

    model = apps.get_model(args.model)
    filters = dict(item.split("=", 1) for item in args.filters)
    fields = args.fields.split(",") if args.fields else []
    return list(model.objects.filter(**filters).order_by("pk").values(*fields))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    account = commands.add_parser("account", help="a user, optionally a token and a provider")
    account.add_argument("username")
    account.add_argument("--password")
    account.add_argument("--staff", action="store_true")
    account.add_argument("--token", metavar="NAME", help="make an API token with this name")
    account.add_argument("--smtp-port", type=int, help="an SMTP provider 'sink' on this port")
    token = commands.add_parser("token", help="an API token of a user")
    token.add_argument("username")
    token.add_argument("--name", default="tests")
    provider = commands.add_parser("provider", help="a provider config of a user")
    provider.add_argument("username")
    provider.add_argument("kind")
    provider.add_argument("--name")
    provider.add_argument("--priority", type=int)
    provider.add_argument("--smtp-port", type=int, help="(smtp) on 127.0.0.1 without TLS")
    provider.add_argument("--settings", help="JSON")
    provider.add_argument("--secrets", help="JSON")
    email = commands.add_parser("email", help="an email of a user")
    email.add_argument("username")
    email.add_argument("--subject", default="Hello")
    email.add_argument("--from-email", default="Sender <sender@example.com>")
    email.add_argument("--to", default="rcpt@example.org")
    email.add_argument("--send", action="store_true", help="send it (else: left sending)")
    email.add_argument("--lease-expired", action="store_true")
    rows = commands.add_parser("rows", help="rows of a model as JSON, e.g. mailer.Email pk=3")
    rows.add_argument("model")
    rows.add_argument("filters", nargs="*", metavar="FIELD=VALUE")
    rows.add_argument("--fields", help="comma-separated (default: all)")
    args = parser.parse_args(argv)

    import os

    import django
    from django.core.serializers.json import DjangoJSONEncoder

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "emailservice.settings")  # as manage.py
    django.setup()
    handler = {"account": _cmd_account, "token": _cmd_token, "provider": _cmd_provider,
               "email": _cmd_email, "rows": _cmd_rows}[args.command]  # fmt: skip
    print(json.dumps(handler(args), cls=DjangoJSONEncoder), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
