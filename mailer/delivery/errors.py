"""Turn whatever a provider raised into one attempt outcome."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mailer.providers.base import ProviderError
from mailer.vocabulary import Outcome

logger = logging.getLogger("mailer.delivery")


@dataclass(frozen=True)
class Classified:
    outcome: Outcome
    code: str
    message: str
    opens_circuit: bool = False

    @property
    def counts_for_breaker(self) -> bool:
        return self.outcome in (Outcome.PROVIDER_ERROR, Outcome.AMBIGUOUS)


def classify(exc: BaseException) -> Classified:
    """Classify a provider exception.

    Providers raise ProviderError subclasses for every failure they understand. Anything else is
    a bug in a provider module: it is logged with its traceback and treated as this provider's
    failure, so the message still gets its chance with the next provider.
    """
    if isinstance(exc, ProviderError):
        return Classified(exc.outcome, exc.code, exc.message, exc.opens_circuit)
    logger.error("unexpected error inside a provider", exc_info=exc)
    return Classified(Outcome.PROVIDER_ERROR, "unexpected_error", f"{type(exc).__name__}: {exc}")
