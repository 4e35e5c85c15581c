"""What every driver shares: the open error, option-problem reporting, raw-text clipping."""

from __future__ import annotations

import time

from devices.base import SensorConfig
from pledgewatch.errors import PledgewatchError, ValidationError
from pledgewatch.events import MAX_TEXT
from pledgewatch.tomlconf import Fields

RAW_LIMIT = 200


class SensorOpenError(PledgewatchError):
    """Hardware that could not be opened: missing library, pin in use, no such port."""


def option_fields(config: SensorConfig, problems: list[str]) -> Fields:
    """A ``Fields`` reader over the sensor's ``options`` table (paths read ``options.KEY``)."""
    return Fields(dict(config.options), "options", problems)


def check_bay(config: SensorConfig, problems: list[str], *, required: bool) -> None:
    bay = config.bay
    if bay is None:
        if required:
            problems.append(f"bay: required for driver {config.driver!r}")
        return
    if not 1 <= len(bay) <= MAX_TEXT or not bay.isprintable():
        problems.append(f"bay: got {bay!r}, want 1-{MAX_TEXT} printable characters")


def raise_problems(config: SensorConfig, problems: list[str]) -> None:
    """Raise one ``ValidationError`` listing every problem, if there are any."""
    if problems:
        raise ValidationError(f"{config.driver} sensor: " + "; ".join(problems))


def clip(data: bytes | str) -> str:
    """Raw input as printable text for ``Malformed.raw``: undecodable bytes escaped, clipped."""
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "…"


def wall_ms() -> int:
    """Wall-clock milliseconds since the epoch (for edges that happen between polls)."""
    return time.time_ns() // 1_000_000
