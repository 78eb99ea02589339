"""Validation, tokens, secrets at rest, the create_token command and /healthz."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection

from mailer import crypto
from mailer.errors import MessageTooLarge
from mailer.models import ApiToken, Email, ProviderConfig
from mailer.services import (
    email_send,
    provider_config_update,
    token_authenticate,
    token_create,
    token_revoke,
)
from mailer.validation import Attachment, InvalidEmail, validate
from tests.conftest import outgoing


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"from_email": "not an address"}, "from", "not a valid email address"),
        ({"to": []}, "to", "At least one recipient"),
        ({"to": ["ok@example.org\r\nBcc: victim@example.org"]}, "to", "line break"),
        ({"cc": ["a@example.org, b@example.org"]}, "cc", "single address"),
        ({"to": [f"r{i}@example.org" for i in range(51)]}, "to", "at most 50"),
        ({"subject": "Hi\nBcc: x@example.org"}, "subject", "line breaks"),
        ({"subject": "  "}, "subject", "empty"),
        ({"text": "", "html": ""}, "text", "text or an HTML body"),
        ({"headers": {"X-Ok": "a\r\nBcc: x@y.z"}}, "headers", "without line breaks"),
        ({"headers": {"Bad Name": "v"}}, "headers", "not a valid header name"),
        ({"headers": {"Bcc": "x@example.org"}}, "headers", "own field"),
        ({"attachments": [Attachment("a\n.txt", "text/plain", b"x")]}, "attachments", "filename"),
        ({"attachments": [Attachment("a.txt", "text", b"x")]}, "attachments", "content type"),
    ],
)
def test_validation_names_the_field(overrides, field, fragment):
    with pytest.raises(InvalidEmail) as caught:
        validate(outgoing(**overrides))
    assert field in caught.value.errors
    assert any(fragment in message for message in caught.value.errors[field])


def test_too_large_is_its_own_error(settings):
    settings.MAX_MESSAGE_BYTES = 1000
    with pytest.raises(MessageTooLarge) as caught:
        validate(
            outgoing(attachments=[Attachment("big.bin", "application/octet-stream", b"x" * 800)])
        )
    assert "message" in caught.value.errors


@pytest.mark.django_db
def test_invalid_email_stores_nothing(account):
    with pytest.raises(InvalidEmail):
        email_send(account=account, outgoing=outgoing(to=["bad"]))
    assert not Email.objects.exists()


@pytest.mark.django_db
def test_tokens_are_stored_hashed_and_can_be_revoked(account):
    token, raw = token_create(account=account, name="ci")
    assert raw.startswith("es_") and len(raw) > 40
    stored = ApiToken.objects.get(pk=token.pk)
    assert raw not in (stored.digest, stored.prefix)
    assert stored.prefix == raw[:10]
    assert token_authenticate(raw=raw).account == account
    assert token_authenticate(raw=raw + "x") is None
    token_revoke(token=stored)
    assert token_authenticate(raw=raw) is None


@pytest.mark.django_db
def test_provider_secrets_are_encrypted_at_rest(add_provider):
    config = add_provider(
        "smtp",
        settings={"host": "smtp.example.com"},
        secrets={"username": "u", "password": "hunter2-secret"},
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT secrets_encrypted FROM mailer_providerconfig WHERE id = %s", [config.pk]
        )
        raw_column = cursor.fetchone()[0]
    assert "hunter2" not in raw_column
    assert crypto.decrypt_json(raw_column) == {"username": "u", "password": "hunter2-secret"}
    assert config.secret_names == ["password", "username"]

    provider_config_update(config=config, secrets={"username": ""})
    config = ProviderConfig.objects.get(pk=config.pk)
    assert crypto.decrypt_json(config.secrets_encrypted) == {"password": "hunter2-secret"}


def test_key_rotation_keeps_old_secrets_readable(settings):
    from cryptography.fernet import Fernet

    old_key = settings.ENCRYPTION_KEYS[0]
    token = crypto.encrypt_json({"api_key": "k"})
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
    assert crypto.decrypt_json(token) == {"api_key": "k"}
    rotated = crypto.rotate(token)
    settings.ENCRYPTION_KEYS = settings.ENCRYPTION_KEYS[:1]
    assert crypto.decrypt_json(rotated) == {"api_key": "k"}


@pytest.mark.django_db
def test_create_token_command_prints_the_token_last(capsys):
    call_command("create_token", "carol", "--create-user", "--name", "deploy")
    out = capsys.readouterr().out.strip().splitlines()
    raw = out[-1]
    token = token_authenticate(raw=raw)
    assert token is not None
    assert token.account.username == "carol"
    assert token.name == "deploy"


@pytest.mark.django_db
def test_create_token_for_unknown_user_explains():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--create-user"):
        call_command("create_token", "nobody")


@pytest.mark.django_db
def test_healthz_reports_database_and_cache(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "cache": "ok"}
