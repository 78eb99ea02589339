"""Failover for one message over an ordered list of providers. Knows nothing of the database."""

from __future__ import annotations

import logging
import random
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
from .pacing import Limits, Pacer, Slot

logger = logging.getLogger("mailer.delivery")


@dataclass(frozen=True)
class Candidate:
    """One provider to try. `key` names its circuit; `ref` is the caller's own handle."""

    key: str
    label: str
    provider: Provider
    ref: Any = None
    limits: Limits = field(default_factory=Limits)  # its pacing, shared by every process


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
PACED = "paced"  # skipped: the provider is at its max_per_second or max_per_day


@dataclass
class Delivery:
    attempts: list[Attempt] = field(default_factory=list)
    budget: Deadline | None = None
    # Providers never tried because the send's budget was spent (each a skipped attempt too).
    untried: int = 0
    # Why no provider was offered the message at all (the caller decided before failover).
    blocked: str = ""
    # When no provider took the message and one was passed over at its pacing limit: the
    # earliest time (epoch seconds) one of those has room again. The caller waits for it.
    paced_until: float | None = None

    @property
    def waiting(self) -> bool:
        """Nothing accepted or rejected it, and a provider at its limit will have room: the
        email waits for that slot instead of failing."""
        return self.paced_until is not None and not self.accepted and not self.rejected

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
            if self.paced_until is not None:
                at = time.strftime("%H:%M:%S", time.gmtime(self.paced_until))
                return f"Every provider is at its pacing limit; the next has room at {at} UTC."
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
    slot: Slot | None = None,
) -> Attempt:
    # A paced send starts when its slot was granted, on the pacer's (shared) clock.
    started_at = datetime.fromtimestamp(slot.at, UTC) if slot else datetime.now(UTC)
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
    pacer: Pacer | None = None,
    pace_wait: float = 0.0,
) -> Delivery:
    """Try candidates in order until one accepts the message or it is rejected.

    Open circuits are skipped, and so are providers paused after a throttling answer and, with a
    `pacer`, providers at their pacing limit (each a skipped attempt saying why). When nothing
    took the message and a provider was at its limit, this waits up to `pace_wait` seconds
    (within the budget) for its next slot; past that, `delivery.paced_until` says when there is
    room and the caller makes the email wait. Otherwise, if every provider was skipped (open or
    paused), they are still tried in order, so no message fails without a real attempt.
    Exceptions of the `interrupts` types raised by a provider propagate instead of counting as
    its failure. With a `budget`, no attempt runs past it, and once it is spent the providers
    left are recorded as skipped (`delivery.untried`): the caller decides whether someone tries
    them later.
    """
    run = _Failover(message, breaker, on_attempt, interrupts, budget, pacer)
    if run.first_pass(candidates) or run.delivery.untried:
        return run.delivery
    if run.paced:
        run.wait_for_pace(pace_wait)
    elif candidates and all(a.outcome == Outcome.SKIPPED for a in run.delivery.attempts):
        logger.warning("every provider is skipped (open or paused); trying them in order anyway")
        run.forced_pass(candidates)
    return run.delivery


class _Failover:
    """One deliver() call's state: the attempts so far and the providers at their limit."""

    def __init__(self, message, breaker, on_attempt, interrupts, budget, pacer) -> None:
        self.message, self.breaker, self.on_attempt = message, breaker, on_attempt
        self.interrupts, self.budget, self.pacer = interrupts, budget, pacer
        self.delivery = Delivery(budget=budget)
        self.paced: dict[Candidate, float] = {}  # at its limit -> when it has room (epoch s)

    def record(self, attempt: Attempt) -> bool:
        """Keep the attempt; True when it ends the delivery (sent or rejected)."""
        self.delivery.attempts.append(attempt)
        if self.on_attempt is not None:
            self.on_attempt(attempt)
        return attempt.outcome in (Outcome.SENT, Outcome.REJECTED)

    def out_of_time(self, remaining: Sequence[Candidate]) -> bool:
        budget = self.budget
        if budget is None or budget.remaining() >= MIN_ATTEMPT_SECONDS:
            return False
        logger.warning(
            "send budget of %gs spent; %d provider(s) not tried", budget.seconds, len(remaining)
        )
        why = f"not tried: the send's time budget ({budget.seconds:g} s) was spent"
        for candidate in remaining:
            self.record(Attempt(candidate, Outcome.SKIPPED, OUT_OF_TIME, why))
        self.delivery.untried = len(remaining)
        return True

    def reserve(self, candidate: Candidate) -> Slot | None:
        """The candidate's pacing slot (None: it has no limits, or nobody paces)."""
        if self.pacer is None or not candidate.limits.any:
            return None
        units = len(self.message.recipients()) if candidate.provider.counts_recipients else 1
        return self.pacer.reserve(candidate.key, candidate.limits, units)

    def send(self, candidate: Candidate, slot: Slot | None = None, clean: bool = False) -> bool:
        attempt = _attempt(self.message, candidate, self.breaker, self.interrupts, self.budget,
                           clean, slot)  # fmt: skip
        return self.record(attempt)

    def first_pass(self, candidates: Sequence[Candidate]) -> bool:
        """Each candidate in order, skipping the ones not to be tried now; True once one took
        or rejected the message."""
        for index, candidate in enumerate(candidates):
            admission = self.breaker.admit(candidate.key)
            if admission.paused is not None:
                self.record(
                    Attempt(candidate, Outcome.SKIPPED, PAUSED, admission.paused.describe())
                )
                continue
            if not admission.allowed:
                why = "circuit open: not tried"
                self.record(Attempt(candidate, Outcome.SKIPPED, "circuit_open", why))
                continue
            if self.out_of_time(candidates[index:]):
                return False
            slot = self.reserve(candidate)
            if slot is not None and not slot.granted:
                self.paced[candidate] = slot.at + slot.wait
                why = f"{slot.reason}: room again in {slot.wait:.2f} s"
                self.record(Attempt(candidate, Outcome.SKIPPED, PACED, why))
                continue
            if self.send(candidate, slot, admission.clean):
                return True
        return False

    def forced_pass(self, candidates: Sequence[Candidate]) -> None:
        for index, candidate in enumerate(candidates):
            if self.out_of_time(candidates[index:]) or self.send(candidate):
                return

    def wait_for_pace(self, pace_wait: float) -> None:
        """Wait for the next slot of a provider at its limit (the earliest first), up to
        `pace_wait` seconds and within the budget; try it then. Past that, say when the first
        has room (`delivery.paced_until`)."""
        end = time.monotonic() + pace_wait
        if self.budget is not None:
            end = min(end, time.monotonic() + self.budget.remaining() - MIN_ATTEMPT_SECONDS)
        while self.paced:
            candidate, until = min(self.paced.items(), key=lambda item: item[1])
            # A little jitter, so processes waiting for the same slot don't all ask at once.
            delay = max(0.0, until - time.time()) + random.uniform(0, 0.02)  # noqa: S311
            if time.monotonic() + delay > end:
                self.delivery.paced_until = until
                return
            time.sleep(delay)
            slot = self.reserve(candidate)
            if slot is None or slot.granted:
                del self.paced[candidate]
                if self.send(candidate, slot):
                    return
            else:
                self.paced[candidate] = slot.at + slot.wait
