"""gunicorn's logger with credentials taken out (README: Accounts and throttling).

No credential reaches a log line: the access log's
request line, URL, query, referrer and redirect atoms lose the values of TOKEN/token/api_key
query parameters (case-insensitive), anything shaped like one of our API tokens, and the secret
parts of password-reset and sign-up links; credential headers are never logged at all. The
same cleaning applies to gunicorn's error log ("Error handling request <uri>").
"""

import re
from urllib.parse import unquote_plus

from gunicorn.glogging import Logger

REDACTED = "[redacted]"
SECRET_PARAMS = frozenset({"token", "api_key", "apikey", "access_token"})
SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
_QUERY_PARAM = re.compile(r"(?P<lead>^|[?&;])(?P<name>[^=&;?#\s]+)=(?P<value>[^&;#\s]*)")
_RAW_TOKEN = re.compile(r"es_[A-Za-z0-9_-]{16,}")
_SECRET_PATHS = (
    # /accounts/password/reset/<uidb64>/<token>/ (not its set-password step)
    re.compile(r"(/accounts/password/reset/[^/?#\s]+/)(?!set-password/)[^/?#\s]+"),
    # /accounts/signup/confirm/<link>/
    re.compile(r"(/accounts/signup/confirm/)[^/?#\s]+"),
)


def _param(match: re.Match) -> str:
    name = match["name"]
    if unquote_plus(name).strip().lower() in SECRET_PARAMS:
        return f"{match['lead']}{name}={REDACTED}"
    return match[0]


def redact(text):
    """text without the credentials a URL, a request line or a message may carry."""
    if not isinstance(text, str) or not text:
        return text
    text = _QUERY_PARAM.sub(_param, text)
    for pattern in _SECRET_PATHS:
        text = pattern.sub(rf"\1{REDACTED}", text)
    return _RAW_TOKEN.sub(f"es_{REDACTED}", text)


class RedactingLogger(Logger):
    """gunicorn's logger, with every access-log atom and error-log argument cleaned."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key, value in atoms.items():
            if key[:1] == "{" and key[-2:] in ("}i", "}o", "}e"):
                name = key[1:-2].replace("_", "-")
                if name.removeprefix("http-") in SECRET_HEADERS:
                    atoms[key] = REDACTED
                    continue
            atoms[key] = redact(value)
        return atoms

    def critical(self, msg, *args, **kwargs):
        super().critical(redact(msg), *map(redact, args), **kwargs)

    def error(self, msg, *args, **kwargs):
        super().error(redact(msg), *map(redact, args), **kwargs)

    def warning(self, msg, *args, **kwargs):
        super().warning(redact(msg), *map(redact, args), **kwargs)

    def info(self, msg, *args, **kwargs):
        super().info(redact(msg), *map(redact, args), **kwargs)

    def debug(self, msg, *args, **kwargs):
        super().debug(redact(msg), *map(redact, args), **kwargs)

    def exception(self, msg, *args, **kwargs):
        super().exception(redact(msg), *map(redact, args), **kwargs)

    def log(self, lvl, msg, *args, **kwargs):
        super().log(lvl, redact(msg), *map(redact, args), **kwargs)
