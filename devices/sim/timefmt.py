"""Durations (``90d``, ``1h30m``, ``-5m``, ``500ms``) and RFC 3339 UTC instants, as integer ms."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

SECOND_MS = 1000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
UNITS = {"d": DAY_MS, "h": HOUR_MS, "m": MINUTE_MS, "s": SECOND_MS, "ms": 1}
_DURATION = re.compile(r"([+-]?)((?:[0-9]{1,9}(?:ms|d|h|m|s))+)")
_PART = re.compile(r"([0-9]+)(ms|d|h|m|s)")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)


def parse_duration(text: str, *, signed: bool = False) -> int:
    """Milliseconds in ``text``: unit parts in any order (``1d12h``); a sign only if ``signed``.

    Raises ``ValueError`` with a "got X, want Y" message.
    """
    match = _DURATION.fullmatch(text)
    if match is None or (match.group(1) and not signed):
        want = "a signed duration like -5m, +90s" if signed else "a duration like 90d, 1h30m, 500ms"
        raise ValueError(f"got {text!r}, want {want}")
    total = sum(int(n) * UNITS[unit] for n, unit in _PART.findall(match.group(2)))
    return -total if match.group(1) == "-" else total


def format_duration(ms: int) -> str:
    """The shortest spelling ``parse_duration`` reads back as ``ms``."""
    if ms == 0:
        return "0s"
    sign, rest = ("-", -ms) if ms < 0 else ("", ms)
    parts: list[str] = []
    for unit in ("d", "h", "m", "s", "ms"):
        count, rest = divmod(rest, UNITS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)


def parse_utc(text: str) -> int:
    """Milliseconds since the epoch of an RFC 3339 instant with offset ``Z`` or ``+00:00``."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"got {text!r}, want RFC 3339 like 2024-03-01T00:00:00Z") from None
    if when.utcoffset() != timedelta(0) or "T" not in text:
        raise ValueError(f"got {text!r}, want a UTC instant ending in Z")
    return (when - _EPOCH) // _ONE_MS


def format_utc(ms: int) -> str:
    when = _EPOCH + ms * _ONE_MS
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"
