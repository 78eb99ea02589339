"""Failover for one message over an ordered list of providers. Knows nothing of the database."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from django.core.mail import EmailMessage

from mailer.providers.base import Provider
from mailer.providers.net import Deadline
from mailer.vocabulary import Outcome

from .breaker import CircuitBreaker
from .errors import Classified, classify

logger = logging.getLogger("mailer.delivery")


@dataclass(frozen=True)
class Candidate:
    """One provider to try. `key` names its circuit; `ref` is the caller's own handle."""

    key: str
    label: str
    provider: Provider
    ref: Any = None


@dataclass(frozen=True)
class Attempt:
    candidate: Candidate
    outcome: str
    code: str = ""
    message: str = ""
    message_id: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    duration: float = 0.0


# An attempt needs at least this long to be worth starting: below it, the budget is spent.
MIN_ATTEMPT_SECONDS = 1.0
OUT_OF_TIME = "budget"
PAUSED = "paused"  # skipped: the provider throttled us and its pause has not ended


@dataclass
class Delivery:
    attempts: list[Attempt] = field(default_factory=list)
    budget: Deadline | None = None
    # Providers never tried because the send's budget was spent (each a skipped attempt too).
    untried: int = 0
    # Why no provider was offered the message at all (the caller decided before failover).
    blocked: str = ""

    @property
    def accepted(self) -> Attempt | None:
        last = self.attempts[-1] if self.attempts else None
        return last if last is not None and last.outcome == Outcome.SENT else None

    @property
    def rejected(self) -> bool:
        return any(a.outcome == Outcome.REJECTED for a in self.attempts)

    @property
    def possible_duplicate(self) -> bool:
        return any(a.outcome == Outcome.AMBIGUOUS for a in self.attempts)

    @property
    def failure_reason(self) -> str:
        if self.accepted:
            return ""
        if self.blocked:
            return self.blocked
        tried = [a for a in self.attempts if a.outcome != Outcome.SKIPPED]
        if not tried:
            if self.untried:
                return "The send's time budget was spent before any provider could be tried."
            return "No provider is configured and enabled for this account."
        last = tried[-1]
        if last.outcome == Outcome.REJECTED:
            return f"{last.candidate.label} rejected the message: {last.message}"
        if self.untried:
            return (
                f"No provider accepted the message within the send's {self.budget.seconds:g} s "
                f"budget ({len(tried)} tried, {self.untried} not reached); "
                f"last error from {last.candidate.label}: {last.message}"
            )
        return (
            f"No provider accepted the message ({len(tried)} tried); "
            f"last error from {last.candidate.label}: {last.message}"
        )


def _attempt(
    message: EmailMessage,
    candidate: Candidate,
    breaker: CircuitBreaker,
    interrupts: tuple[type[BaseException], ...] = (),
    budget: Deadline | None = None,
    clean: bool = False,
) -> Attempt:
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    seconds = candidate.provider.attempt_deadline
    deadline = budget.within(seconds) if budget is not None else Deadline(seconds)
    try:
        message_id = candidate.provider.send(message, deadline=deadline)
    except interrupts:
        raise  # the caller stops the whole try (a time limit): not this provider's failure
    except Exception as exc:  # every failure becomes an outcome; classify() logs the unknown ones
        result = classify(exc)
        duration = time.perf_counter() - clock
        if result.throttled:
            result = _pause(breaker, candidate, result)
        elif result.counts_for_breaker:
            breaker.record_failure(
                candidate.key, error=result.message, trip_now=result.opens_circuit
            )
        logger.warning(
            "attempt via %s: %s %s %s (%.3fs)",
            candidate.label,
            result.outcome,
            result.code,
            result.message,
            duration,
        )
        return Attempt(
            candidate, result.outcome, result.code, result.message, "", started_at, duration
        )
    duration = time.perf_counter() - clock
    breaker.record_success(candidate.key, clean=clean)
    logger.info("attempt via %s: sent %s (%.3fs)", candidate.label, message_id, duration)
    return Attempt(candidate, Outcome.SENT, "", "", message_id or "", started_at, duration)


def _pause(breaker: CircuitBreaker, candidate: Candidate, result: Classified) -> Classified:
    """A throttling answer pauses the provider (shared through the cache) instead of counting
    towards its circuit; the attempt's message says for how long."""
    pause = breaker.pause_for(result.retry_after)
    if breaker.pause(candidate.key, pause):
        note = f"paused for {pause.seconds:g} s ({pause.reason})"
    else:
        note = "not paused: the cache is unreachable"
    return replace(result, message=f"{result.message}; {note}")


def deliver(
    message: EmailMessage,
    candidates: Sequence[Candidate],
    *,
    breaker: CircuitBreaker,
    on_attempt: Callable[[Attempt], None] | None = None,
    interrupts: tuple[type[BaseException], ...] = (),
    budget: Deadline | None = None,
) -> Delivery:
    """Try candidates in order until one accepts the message or it is rejected.

    Open circuits are skipped, and so are providers paused after a throttling answer. If every
    provider is skipped (open or paused), they are still tried in order, so no message fails
    without at least one real attempt. Exceptions of the `interrupts` types
    raised by a provider propagate instead of counting as its failure. With a `budget`, no
    attempt runs past it, and once it is spent the providers left are recorded as skipped
    (`delivery.untried`): the caller decides whether someone tries them later.
    """
    delivery = Delivery(budget=budget)

    def record(attempt: Attempt) -> bool:
        delivery.attempts.append(attempt)
        if on_attempt is not None:
            on_attempt(attempt)
        return attempt.outcome in (Outcome.SENT, Outcome.REJECTED)

    def out_of_time(remaining: Sequence[Candidate]) -> bool:
        if budget is None or budget.remaining() >= MIN_ATTEMPT_SECONDS:
            return False
        logger.warning(
            "send budget of %gs spent; %d provider(s) not tried", budget.seconds, len(remaining)
        )
        why = f"not tried: the send's time budget ({budget.seconds:g} s) was spent"
        for candidate in remaining:
            record(Attempt(candidate, Outcome.SKIPPED, OUT_OF_TIME, why))
        delivery.untried = len(remaining)
        return True

    for index, candidate in enumerate(candidates):
        admission = breaker.admit(candidate.key)
        if admission.paused is not None:
            record(Attempt(candidate, Outcome.SKIPPED, PAUSED, admission.paused.describe()))
            continue
        if not admission.allowed:
            record(Attempt(candidate, Outcome.SKIPPED, "circuit_open", "circuit open: not tried"))
            continue
        if out_of_time(candidates[index:]):
            return delivery
        if record(_attempt(message, candidate, breaker, interrupts, budget, admission.clean)):
            return delivery

    if candidates and all(a.outcome == Outcome.SKIPPED for a in delivery.attempts):
        logger.warning("every provider is skipped (open or paused); trying them in order anyway")
        for index, candidate in enumerate(candidates):
            if out_of_time(candidates[index:]):
                return delivery
            if record(_attempt(message, candidate, breaker, interrupts, budget)):
                return delivery
    return delivery
