"""When to try a failed webhook again: a bounded schedule with full jitter, and Retry-After.

After the k-th failed attempt (k = 1, 2, …) the next attempt waits

    delay_k = uniform(min(MIN_DELAY_MS, step_k), step_k)      (full jitter; step_k if off)

where ``step_k`` is the k-th entry of the schedule (Svix-like, over days: 5 s, 5 min, 30 min,
2 h, 5 h, 10 h, 14 h, 20 h, 24 h). A ``Retry-After`` from the receiver is a floor: the
next attempt is never earlier than it asks (capped at ``max_retry_after_ms``, so a receiver
cannot park a message for years). After ``len(schedule) + 1`` failed attempts the schedule
has run out and the message is dead. Jitter spreads the retries of many messages that
failed together, so a receiver coming back is not hit by all of them at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

MIN_DELAY_MS = 1000


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    steps_ms: tuple[int, ...]
    jitter: bool = True
    max_retry_after_ms: int = 86_400_000

    @classmethod
    def from_seconds(
        cls, steps_s: tuple[int, ...], *, jitter: bool = True, max_retry_after_s: int = 86_400
    ) -> RetrySchedule:
        return cls(tuple(s * 1000 for s in steps_s), jitter, max_retry_after_s * 1000)

    def next_attempt_ms(
        self, failures: int, now_ms: int, retry_after_ms: int | None, rng: random.Random
    ) -> int | None:
        """When to try again after ``failures`` failed attempts; ``None``: give up (dead)."""
        if failures < 1 or failures > len(self.steps_ms):
            return None
        step = self.steps_ms[failures - 1]
        delay = rng.randint(min(MIN_DELAY_MS, step), step) if self.jitter else step
        if retry_after_ms is not None:
            delay = max(delay, min(retry_after_ms, self.max_retry_after_ms))
        return now_ms + delay


def parse_retry_after(value: str | None, now_ms: int) -> int | None:
    """``Retry-After`` (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) as milliseconds from
    ``now_ms`` (0 for a date in the past); ``None`` when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text) * 1000
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; "-0000" parses as naive
        when = when.replace(tzinfo=UTC)
    at_ms = int(when.timestamp()) * 1000
    return max(0, at_ms - now_ms)
