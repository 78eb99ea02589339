"""The application's errors: one hierarchy that says what went wrong, never how to answer it.

Domain code raises these classes and picks no HTTP status. Each edge maps them to its own
answer in one place: the API to problem details (mailer/api/problems.py, STATUSES), the
original contract to its {"message", "status"} shape (mailer/legacy.py, ANSWERS), the pages to
form errors (mailer/web/forms.py, PageForm.add_app_error).

    AppError                     `message` for people; `errors` maps fields to their messages
    ├── InvalidInput             fields a person can fix, each named in `errors`
    │   ├── MessageTooLarge      over MAX_MESSAGE_BYTES (or a body over its limit)
    │   ├── InvalidEmail             mailer.validation
    │   └── ProviderSettingsError    mailer.provider_settings
    ├── Conflict                 the request clashes with what is stored
    │   ├── NameTaken            another of the account's things has this name
    │   │   └── ProviderNameTaken    mailer.provider_settings
    │   ├── IdempotencyConflict      mailer.services.emails: KeyReused, InFlight
    │   ├── TokenLimitReached        mailer.services.tokens
    │   └── SignUpConflict           mailer.services.accounts
    └── RateLimited                  mailer.ratelimit (`retry_after`)
"""

from __future__ import annotations

from collections.abc import Mapping


class AppError(Exception):
    """Something a request asked for can't be done. `message` says why, for people; `errors`
    maps each field at fault to its messages (empty when no field is)."""

    def __init__(self, message: str = "", *, errors: Mapping[str, list[str]] | None = None):
        self.errors: dict[str, list[str]] = dict(errors or {})
        self.message = message or "; ".join(f"{k}: {' '.join(v)}" for k, v in self.errors.items())
        super().__init__(self.message)


class InvalidInput(AppError):
    """The request's fields can't be used; `errors` names each bad one. `message` defaults to
    all of them in one line."""

    def __init__(self, errors: Mapping[str, list[str]], *, message: str = "") -> None:
        super().__init__(message, errors=errors)


class MessageTooLarge(InvalidInput):
    """The message (or the request carrying it) is over its size limit."""


class Conflict(AppError):
    """The request clashes with what is stored, or with a request still being handled."""


class NameTaken(Conflict):
    """Another of the account's things already has this name; `errors` names the field."""

    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        super().__init__(errors=errors)


def nearest[T](table: Mapping[type, T], error: BaseException) -> T:
    """The table's entry for the error's own class or else for its nearest base: an edge's one
    map from error classes to its answers."""
    return next(table[cls] for cls in type(error).__mro__ if cls in table)
