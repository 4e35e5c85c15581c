"""What the anchor appends to its Merkle log: one leaf per verified event or key change.

Leaf data (the bytes RFC 6962 hashes as ``SHA-256(0x00 || leaf data)``) is canonical JSON:

    event leaf:  {"signed": <signed-event envelope object>, "type": "event", "v": 1}
    key leaf:    {"key": <key record>, "type": "key", "v": 1}

A key record states a gateway key's enrolment, rotation or revocation, so that the log itself
proves which key was valid when, and old proofs stay checkable after a rotation::

    {"action": "enrol" | "revoke",
     "at_ms": <int: when the anchor recorded it>,
     "gateway": <gateway id>,
     "key_id": <32 hex>,
     "public_key": <64 hex>,
     "valid_from_ms": <int>,
     "valid_until_ms": <int or null>,
     "warehouse": <warehouse id>}

A rotation is an ``enrol`` of the new key plus a ``revoke`` (with ``valid_until_ms``) of the
old one. An event is acceptable only if signed by a key whose latest record enrols it and
whose validity window contains the event's ``ts_ms``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from pledgewatch import canonical
from pledgewatch.errors import ValidationError
from pledgewatch.events import SignedEvent
from pledgewatch.signing import key_id
from pledgewatch.topics import check_id

LEAF_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")


class KeyAction(enum.Enum):
    ENROL = "enrol"
    REVOKE = "revoke"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    action: KeyAction
    warehouse: str
    gateway: str
    public_key: bytes
    valid_from_ms: int
    valid_until_ms: int | None
    at_ms: int

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action.value,
            "at_ms": self.at_ms,
            "gateway": self.gateway,
            "key_id": self.key_id,
            "public_key": self.public_key.hex(),
            "valid_from_ms": self.valid_from_ms,
            "valid_until_ms": self.valid_until_ms,
            "warehouse": self.warehouse,
        }

    @classmethod
    def from_dict(cls, value: object) -> KeyRecord:
        want = {
            "action",
            "at_ms",
            "gateway",
            "key_id",
            "public_key",
            "valid_from_ms",
            "valid_until_ms",
            "warehouse",
        }
        if not isinstance(value, dict) or set(value) != want:
            raise ValidationError(f"key record: want keys {sorted(want)}")
        pub = value["public_key"]
        if not isinstance(pub, str) or _HEX64.fullmatch(pub) is None:
            raise ValidationError("key record public_key: want 64 lowercase hex digits")
        try:
            action = KeyAction(value["action"])
        except ValueError:
            raise ValidationError(f"key record action: got {value['action']!r}") from None
        until = value["valid_until_ms"]
        for name in ("at_ms", "valid_from_ms"):
            if not isinstance(value[name], int) or isinstance(value[name], bool):
                raise ValidationError(f"key record {name}: want an integer")
        if until is not None and (not isinstance(until, int) or isinstance(until, bool)):
            raise ValidationError("key record valid_until_ms: want an integer or null")
        record = cls(
            action,
            check_id("warehouse", value["warehouse"]),
            check_id("gateway", value["gateway"]),
            bytes.fromhex(pub),
            value["valid_from_ms"],
            until,
            value["at_ms"],
        )
        if record.key_id != value["key_id"]:
            raise ValidationError("key record key_id does not match public_key")
        return record


def event_leaf(signed: SignedEvent) -> bytes:
    """Leaf data of a verified event (its whole signed envelope, signature included)."""
    envelope = canonical.decode(signed.to_wire())
    return canonical.encode({"signed": envelope, "type": "event", "v": LEAF_VERSION})


def key_leaf(record: KeyRecord) -> bytes:
    return canonical.encode({"key": record.to_dict(), "type": "key", "v": LEAF_VERSION})


def parse_leaf(data: bytes) -> SignedEvent | KeyRecord:
    """Decode leaf data strictly; the signed event's signature is NOT checked here."""
    value = canonical.decode(data)
    if not isinstance(value, dict) or value.get("v") != LEAF_VERSION:
        raise ValidationError(f"leaf: want an object with v = {LEAF_VERSION}")
    if value.get("type") == "event" and set(value) == {"signed", "type", "v"}:
        return SignedEvent.from_wire(canonical.encode(value["signed"]))
    if value.get("type") == "key" and set(value) == {"key", "type", "v"}:
        return KeyRecord.from_dict(value["key"])
    raise ValidationError("leaf: want type event (keys signed, type, v) or key (key, type, v)")


_EVENT_LEAF_HEAD = b'{"signed":'
_EVENT_LEAF_TAIL = b',"type":"event","v":1}'


def event_leaf_from_wire(wire: bytes) -> bytes:
    """``event_leaf`` without decoding: ``wire`` must already be canonical envelope bytes.

    Canonical JSON sorts keys, and ``"signed" < "type" < "v"``, so the leaf is literally
    ``{"signed":`` + wire + ``,"type":"event","v":1}``.
    """
    return _EVENT_LEAF_HEAD + wire + _EVENT_LEAF_TAIL
