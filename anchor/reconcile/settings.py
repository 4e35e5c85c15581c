"""The reconciler's rule thresholds (``RuleSettings``) and its one notion of "the day"."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from anchor.errors import ConfigError

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
_EPOCH = dt.date(1970, 1, 1)


def day_of(ms: int) -> dt.date:
    """The UTC calendar day of an instant (exact integer arithmetic; negative ms allowed)."""
    return _EPOCH + dt.timedelta(days=ms // DAY_MS)


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """Thresholds of ``rules.evaluate``; every problem is reported at once (``ConfigError``).

    Percentages are ``Decimal`` percent (``Decimal(10)`` = 10 %).
    """

    weight_mismatch_for_ms: int = 2 * HOUR_MS  # disagreement must last longer than this
    weight_critical_pct: Decimal = Decimal(10)  # cells below book by more: CRITICAL
    silent_after_ms: int = 2 * HOUR_MS  # no heartbeat for longer than this: DEVICE_SILENT
    silent_major_after_ms: int = DAY_MS  # silent this long: one severity step up
    shortfall_major_pct: Decimal = Decimal(2)  # missing share of the pledge: MAJOR from here
    shortfall_critical_pct: Decimal = Decimal(10)  # ... CRITICAL from here
    tamper_signal_for_ms: int = 7 * DAY_MS  # a TAMPER event is reported this long
    max_evidence: int = 64  # event ids per condition (the newest kept)

    def __post_init__(self) -> None:
        problems = []
        for name in (
            "weight_mismatch_for_ms",
            "silent_after_ms",
            "silent_major_after_ms",
            "tamper_signal_for_ms",
            "max_evidence",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                problems.append(f"{name}: got {value!r}, want an integer >= 0")
        for name in ("weight_critical_pct", "shortfall_major_pct", "shortfall_critical_pct"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or not 0 <= value <= 100:
                problems.append(f"{name}: got {value!r}, want a Decimal percent 0..100")
        if not problems and self.shortfall_major_pct > self.shortfall_critical_pct:
            problems.append(
                f"shortfall_major_pct: got {self.shortfall_major_pct}, want <= "
                f"shortfall_critical_pct {self.shortfall_critical_pct}"
            )
        if not problems and self.silent_major_after_ms < self.silent_after_ms:
            problems.append(
                f"silent_major_after_ms: got {self.silent_major_after_ms}, want >= "
                f"silent_after_ms {self.silent_after_ms}"
            )
        if problems:
            raise ConfigError("reconcile rule settings", problems)


def newest(ids: tuple[str, ...], limit: int) -> tuple[str, ...]:
    """The last ``limit`` ids (``ids[-0:]`` would be all of them)."""
    return ids[max(len(ids) - limit, 0) :]
