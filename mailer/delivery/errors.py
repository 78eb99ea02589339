"""Turn whatever a provider raised into one attempt outcome."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mailer.providers.base import ProviderError, ProviderThrottled
from mailer.vocabulary import Outcome

logger = logging.getLogger("mailer.delivery")

# The attempt code of every throttling answer, whatever the kind said (429, Throttling, 421):
# that raw code stays in the message.
THROTTLED = "throttled"


@dataclass(frozen=True)
class Classified:
    outcome: Outcome
    code: str
    message: str
    opens_circuit: bool = False
    # The provider asked us to slow down: failover pauses it instead of counting a failure.
    throttled: bool = False
    retry_after: float | None = None  # the wait it asked for, in seconds; None: none said

    @property
    def counts_for_breaker(self) -> bool:
        if self.throttled:
            return False
        return self.outcome in (Outcome.PROVIDER_ERROR, Outcome.AMBIGUOUS)


def classify(exc: BaseException) -> Classified:
    """Classify a provider exception.

    Providers raise ProviderError subclasses for every failure they understand; a throttling
    answer (ProviderThrottled) is coded `throttled` and counts nothing. Anything else is
    a bug in a provider module: it is logged with its traceback and treated as this provider's
    failure, so the message still gets its chance with the next provider.
    """
    if isinstance(exc, ProviderThrottled):
        return Classified(
            exc.outcome, THROTTLED, exc.message, throttled=True, retry_after=exc.retry_after
        )
    if isinstance(exc, ProviderError):
        return Classified(exc.outcome, exc.code, exc.message, exc.opens_circuit)
    logger.error("unexpected error inside a provider", exc_info=exc)
    return Classified(Outcome.PROVIDER_ERROR, "unexpected_error", f"{type(exc).__name__}: {exc}")
