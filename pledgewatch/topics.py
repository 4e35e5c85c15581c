"""The MQTT topic layout shared by gateways and the anchor.

Every topic carries the warehouse and the gateway id so that a broker ACL can confine a
gateway, logged in with its gateway id as MQTT username, to its own topics::

    pledgewatch/v1/{warehouse}/{gateway}/events     gateway -> anchor   signed events, QoS 1
    pledgewatch/v1/{warehouse}/{gateway}/receipts   anchor  -> gateway  signed receipts, QoS 1
    pledgewatch/v1/{warehouse}/{gateway}/health     gateway -> anyone   retained health, QoS 1

Mosquitto ACL that confines each gateway (its username is its gateway id)::

    pattern write pledgewatch/v1/+/%u/events
    pattern write pledgewatch/v1/+/%u/health
    pattern read  pledgewatch/v1/+/%u/receipts

The ``+`` lets a gateway name any warehouse; the anchor's registry binds each gateway key to
one warehouse and rejects events whose topic, event body and enrolment disagree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pledgewatch.errors import ValidationError

ROOT = "pledgewatch/v1"
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def check_id(what: str, value: object) -> str:
    """Return ``value`` if it is a valid warehouse/gateway/device id, else raise."""
    if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
        raise ValidationError(
            f"{what}: got {value!r}, want 1-64 chars of [a-z0-9._-] starting with [a-z0-9]"
        )
    return value


def events_topic(warehouse: str, gateway: str) -> str:
    return f"{ROOT}/{check_id('warehouse', warehouse)}/{check_id('gateway', gateway)}/events"


def receipts_topic(warehouse: str, gateway: str) -> str:
    return f"{ROOT}/{check_id('warehouse', warehouse)}/{check_id('gateway', gateway)}/receipts"


def health_topic(warehouse: str, gateway: str) -> str:
    return f"{ROOT}/{check_id('warehouse', warehouse)}/{check_id('gateway', gateway)}/health"


EVENTS_FILTER = f"{ROOT}/+/+/events"


@dataclass(frozen=True, slots=True)
class TopicAddress:
    """Where a message was published: ``pledgewatch/v1/{warehouse}/{gateway}/{channel}``."""

    warehouse: str
    gateway: str
    channel: str


def parse_topic(topic: str) -> TopicAddress:
    """Split a pledgewatch topic; raise ``ValidationError`` if it is not one."""
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != ROOT:
        raise ValidationError(f"topic: got {topic!r}, want {ROOT}/WAREHOUSE/GATEWAY/CHANNEL")
    channel = parts[4]
    if channel not in ("events", "receipts", "health"):
        raise ValidationError(f"topic channel: got {channel!r}, want events|receipts|health")
    return TopicAddress(check_id("warehouse", parts[2]), check_id("gateway", parts[3]), channel)
