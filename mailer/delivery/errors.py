"""Turn whatever a provider raised into one attempt outcome."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mailer.providers.base import ProviderError

logger = logging.getLogger("mailer.delivery")

SENT = "sent"
REJECTED = "rejected"
PROVIDER_ERROR = "provider_error"
AMBIGUOUS = "ambiguous"
SKIPPED = "skipped"
OUTCOMES = (SENT, REJECTED, PROVIDER_ERROR, AMBIGUOUS, SKIPPED)


@dataclass(frozen=True)
class Classified:
    outcome: str
    code: str
    message: str
    opens_circuit: bool = False

    @property
    def counts_for_breaker(self) -> bool:
        return self.outcome in (PROVIDER_ERROR, AMBIGUOUS)


def classify(exc: BaseException) -> Classified:
    """Classify a provider exception.

    Providers raise ProviderError subclasses for every failure they understand. Anything else is
    a bug in a provider module: it is logged with its traceback and treated as this provider's
    failure, so the message still gets its chance with the next provider.
    """
    if isinstance(exc, ProviderError):
        return Classified(exc.outcome, exc.code, exc.message, exc.opens_circuit)
    logger.error("unexpected error inside a provider", exc_info=exc)
    return Classified(PROVIDER_ERROR, "unexpected_error", f"{type(exc).__name__}: {exc}")
