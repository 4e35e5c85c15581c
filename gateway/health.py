"""The gateway's own health: named alarms, published retained on its health topic.

Health is infrastructure, not evidence: it is not signed and does not go through the outbox.
It is published retained (so a dashboard sees the last state), written atomically next to the
state database (so ``pledgewatch gateway status`` can show alarms), and logged on change.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


class HealthState(enum.Enum):
    OK = "ok"
    DEGRADED = "degraded"
    ALARM = "alarm"
    OFFLINE = "offline"


class Alarm(enum.Enum):
    OUTBOX_FULL = "outbox_full"  # readings are being pushed back
    OUTBOX_STALE = "outbox_stale"  # an event has waited longer than outbox.max_age_s
    BROKER_DOWN = "broker_down"
    PUBLISH_REFUSED = "publish_refused"  # the broker refused a publish (ACL)
    RECEIPT_INVALID = "receipt_invalid"  # a message on our receipt topic failed verification
    QUARANTINED = "quarantined"  # the anchor refused one of our events
    INVALID_READINGS = "invalid_readings"  # sensors produced readings we could not sign
    SENSOR_FAILED = "sensor_failed"  # a driver raised


_SEVERE = {
    Alarm.OUTBOX_FULL,
    Alarm.OUTBOX_STALE,
    Alarm.PUBLISH_REFUSED,
    Alarm.RECEIPT_INVALID,
    Alarm.QUARANTINED,
}


@dataclass(frozen=True, slots=True)
class GatewayHealth:
    state: HealthState
    alarms: tuple[Alarm, ...]
    warehouse: str
    gateway: str
    ts_ms: int
    connected: bool
    outbox_depth: int
    outbox_capacity: int
    oldest_unsent_age_ms: int | None
    last_receipt_ms: int | None

    def to_json(self) -> bytes:
        data = asdict(self)
        data["state"] = self.state.value
        data["alarms"] = [a.value for a in self.alarms]
        return json.dumps(data, sort_keys=True).encode()


def state_of(alarms: set[Alarm]) -> HealthState:
    """Any severe alarm → ALARM, any other alarm → DEGRADED, none → OK."""
    if alarms & _SEVERE:
        return HealthState.ALARM
    return HealthState.DEGRADED if alarms else HealthState.OK


def ordered(alarms: set[Alarm]) -> tuple[Alarm, ...]:
    return tuple(sorted(alarms, key=lambda a: a.value))


def offline_message(warehouse: str, gateway: str) -> bytes:
    """The retained last-will: the broker publishes it if the gateway vanishes."""
    return json.dumps(
        {"gateway": gateway, "state": HealthState.OFFLINE.value, "warehouse": warehouse},
        sort_keys=True,
    ).encode()


def health_file(state_db: Path) -> Path:
    return state_db.with_name(state_db.name + ".health.json")


def write_health_file(path: Path, health: GatewayHealth) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(health.to_json())
    os.replace(tmp, path)
