"""What a sensor driver hands the gateway: readings, or a named complaint about bad input.

A ``Reading`` is an event without the gateway's part (warehouse, gateway, seq, prev, version):
the gateway's builder adds those, signs, and stores the event durably in one transaction.
Readings are validated exactly like events (``to_event`` raises ``ValidationError``), so a
driver cannot smuggle a float or a bad field into signed data.

Drivers never raise on bad hardware input: they return ``Malformed`` with the raw text and the
reason, which the gateway counts per device and reason and logs; it never crashes on them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

from pledgewatch.errors import ValidationError
from pledgewatch.events import DoorState, Event, Kind

OptionValue = str | int | bool


@dataclass(frozen=True, slots=True)
class Reading:
    device: str
    kind: Kind
    ts_ms: int
    bay: str | None = None
    sku: str | None = None
    lot: str | None = None
    qty: int | None = None
    grams: int | None = None
    release: str | None = None
    door: DoorState | None = None
    reason: str | None = None

    def to_event(self, warehouse: str, gateway: str, seq: int, prev: str) -> Event:
        """The event this reading becomes; raises ``ValidationError`` naming every problem."""
        return Event(
            kind=self.kind,
            warehouse=warehouse,
            gateway=gateway,
            device=self.device,
            seq=seq,
            prev=prev,
            ts_ms=self.ts_ms,
            bay=self.bay,
            sku=self.sku,
            lot=self.lot,
            qty=self.qty,
            grams=self.grams,
            release=self.release,
            door=self.door,
            reason=self.reason,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _READING_FIELDS}
        out["kind"] = self.kind.value
        out["door"] = None if self.door is None else self.door.value
        return out

    @classmethod
    def from_dict(cls, data: object) -> Reading:
        """Parse a JSON-decoded reading. Unknown keys are refused; absent optionals are null."""
        if not isinstance(data, dict):
            raise ValidationError(f"reading: got {type(data).__name__}, want object")
        names = set(_READING_FIELDS)
        extra = sorted(set(data) - names)
        missing = sorted({"device", "kind", "ts_ms"} - set(data))
        if extra or missing:
            raise ValidationError(f"reading keys: missing {missing}, unexpected {extra}")
        values = dict(data)
        try:
            values["kind"] = Kind(values["kind"])
            if values.get("door") is not None:
                values["door"] = DoorState(values["door"])
        except (ValueError, TypeError):
            raise ValidationError(
                f"reading kind/door: got {data.get('kind')!r}/{data.get('door')!r}"
            ) from None
        return cls(**values)


_READING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Reading))


@dataclass(frozen=True, slots=True)
class Malformed:
    """Input a driver could not turn into a reading: counted and logged, never signed."""

    device: str
    reason: str
    raw: str


PollResult = Reading | Malformed


class Sensor(Protocol):
    """A source of readings. ``poll`` never blocks for long and never raises on bad input."""

    @property
    def device_id(self) -> str: ...

    def poll(self, now_ms: int) -> list[PollResult]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SensorConfig:
    """One ``[[sensors]]`` table of the gateway config, already type-checked at the top level."""

    device: str
    driver: str
    bay: str | None
    options: Mapping[str, OptionValue]


SensorFactory = Callable[[SensorConfig], Sensor]
