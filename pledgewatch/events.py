"""Warehouse events: what a gateway signs and the anchor stores.

An event body is a canonical-JSON object (see ``pledgewatch.canonical``) with exactly these
keys, every one always present (``null`` where a kind does not use it)::

    v          int     format version, 1
    kind       string  LOAD | UNLOAD | COUNT | WEIGHT | DOOR | HEARTBEAT | TAMPER
    warehouse  id      warehouse id            (ids: [a-z0-9][a-z0-9._-]{0,63})
    gateway    id      gateway id
    device     id      device id, unique within the gateway
    seq        int     per-device sequence number, gapless from 1
    prev       hex64   event id of the device's previous event; 64 zeros when seq == 1
    ts_ms      int     UTC time of the reading, milliseconds since 1970-01-01
    bay        text?   storage bay (or dock, for a door)
    sku        text?   stock-keeping unit
    lot        text?   lot id, often the warehouse-receipt number
    qty        int?    units (LOAD/UNLOAD > 0, COUNT >= 0)
    grams      int?    weight in integer grams (WEIGHT: the bay's load-cell total)
    release    text?   the bank's release-token id, on an UNLOAD of pledged goods
    door       string? OPEN | CLOSED (DOOR only)
    reason     text?   TAMPER: what was detected

"text" is 1..128 Unicode characters with no control characters. There are no floats anywhere.
The **event id** is ``SHA-256(canonical bytes of the body)`` as 64 lowercase hex digits; it is
what ``prev`` links, so each device's events form a hash chain.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass, field, fields
from typing import Any

from pledgewatch import canonical
from pledgewatch.errors import ValidationError
from pledgewatch.topics import ID_PATTERN

EVENT_VERSION = 1
ZERO_HASH = "0" * 64
MAX_TEXT = 128
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class Kind(enum.Enum):
    LOAD = "LOAD"
    UNLOAD = "UNLOAD"
    COUNT = "COUNT"
    WEIGHT = "WEIGHT"
    DOOR = "DOOR"
    HEARTBEAT = "HEARTBEAT"
    TAMPER = "TAMPER"


class DoorState(enum.Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


_OPTIONAL = ("bay", "sku", "lot", "qty", "grams", "release", "door", "reason")

# Which optional fields each kind requires (R) or allows (A); all others must be null.
_RULES: dict[Kind, dict[str, str]] = {
    Kind.LOAD: {"bay": "R", "sku": "R", "lot": "R", "qty": "R", "grams": "A"},
    Kind.UNLOAD: {"bay": "R", "sku": "R", "lot": "R", "qty": "R", "grams": "A", "release": "A"},
    Kind.COUNT: {"bay": "R", "sku": "R", "lot": "R", "qty": "R"},
    Kind.WEIGHT: {"bay": "R", "grams": "R"},
    Kind.DOOR: {"bay": "A", "door": "R"},
    Kind.HEARTBEAT: {},
    Kind.TAMPER: {"bay": "A", "reason": "R"},
}


@dataclass(frozen=True, slots=True)
class Event:
    """One event body. Construction validates every field and reports every problem at once."""

    kind: Kind
    warehouse: str
    gateway: str
    device: str
    seq: int
    prev: str
    ts_ms: int
    bay: str | None = None
    sku: str | None = None
    lot: str | None = None
    qty: int | None = None
    grams: int | None = None
    release: str | None = None
    door: DoorState | None = None
    reason: str | None = None
    v: int = EVENT_VERSION

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ValidationError("invalid event: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _EVENT_FIELDS}
        out["kind"] = self.kind.value
        out["door"] = None if self.door is None else self.door.value
        return out

    def canonical(self) -> bytes:
        return canonical.encode(self.to_dict())

    def event_id(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    @classmethod
    def from_dict(cls, data: object) -> Event:
        """Build from a decoded body; the key set must be exactly the documented one."""
        if not isinstance(data, dict):
            raise ValidationError(f"event body: got {type(data).__name__}, want object")
        want = set(_EVENT_FIELDS)
        if set(data) != want:
            missing = sorted(want - set(data))
            extra = sorted(set(data) - want)
            raise ValidationError(f"event body keys: missing {missing}, unexpected {extra}")
        values = dict(data)
        values["kind"] = _enum(Kind, "kind", values["kind"])
        if values["door"] is not None:
            values["door"] = _enum(DoorState, "door", values["door"])
        return cls(**values)


_EVENT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Event))


def _enum(cls: type[Kind] | type[DoorState], name: str, value: object) -> Any:
    try:
        return cls(value)
    except ValueError:
        allowed = "|".join(m.value for m in cls)
        raise ValidationError(f"{name}: got {value!r}, want {allowed}") from None


def _problems(e: Event) -> list[str]:
    problems: list[str] = []
    if not isinstance(e.v, int) or isinstance(e.v, bool) or e.v != EVENT_VERSION:
        problems.append(f"v: got {e.v!r}, want {EVENT_VERSION}")
    kind: object = e.kind  # typed as Kind, but built from untrusted input: check anyway
    if not isinstance(kind, Kind):
        problems.append(f"kind: got {kind!r}, want a Kind")
        return problems
    for name in ("warehouse", "gateway", "device"):
        value = getattr(e, name)
        if not isinstance(value, str) or ID_PATTERN.fullmatch(value) is None:
            problems.append(f"{name}: got {value!r}, want an id of [a-z0-9._-]")
    if not _is_int(e.seq) or e.seq < 1 or e.seq > canonical.MAX_SAFE_INT:
        problems.append(f"seq: got {e.seq!r}, want an integer >= 1")
    if not isinstance(e.prev, str) or _HEX64.fullmatch(e.prev) is None:
        problems.append(f"prev: got {e.prev!r}, want 64 lowercase hex digits")
    elif _is_int(e.seq) and (e.seq == 1) != (e.prev == ZERO_HASH):
        problems.append(
            f"prev: seq {e.seq} with prev {e.prev[:12]}…: seq 1 and only seq 1 has zeros"
        )
    if not _is_int(e.ts_ms) or not 0 <= e.ts_ms <= canonical.MAX_SAFE_INT:
        problems.append(f"ts_ms: got {e.ts_ms!r}, want milliseconds >= 0")
    problems.extend(_kind_problems(e))
    return problems


def _kind_problems(e: Event) -> list[str]:
    problems: list[str] = []
    rules = _RULES[e.kind]
    for name in _OPTIONAL:
        value = getattr(e, name)
        rule = rules.get(name)
        if value is None:
            if rule == "R":
                problems.append(f"{name}: required for {e.kind.value}")
            continue
        if rule is None:
            problems.append(f"{name}: must be null for {e.kind.value}, got {value!r}")
            continue
        problem = _field_problem(e.kind, name, value)
        if problem:
            problems.append(problem)
    return problems


def _field_problem(kind: Kind, name: str, value: object) -> str | None:
    if name == "door":
        return None if isinstance(value, DoorState) else f"door: got {value!r}, want OPEN|CLOSED"
    if name in ("qty", "grams"):
        if not _is_int(value) or abs(value) > canonical.MAX_SAFE_INT:  # type: ignore[arg-type]
            return f"{name}: got {value!r}, want an integer"
        if name == "qty" and kind in (Kind.LOAD, Kind.UNLOAD) and value <= 0:  # type: ignore[operator]
            return f"qty: got {value}, want > 0 for {kind.value}"
        if name == "qty" and value < 0:  # type: ignore[operator]
            return f"qty: got {value}, want >= 0"
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_TEXT or _CONTROL.search(value):
        return f"{name}: got {value!r}, want 1-{MAX_TEXT} characters, no control characters"
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


ENVELOPE_VERSION = 1
_KID = re.compile(r"[0-9a-f]{32}")
_WIRE_HEAD = b'{"event":'
_WIRE_TAIL_LEN = len(b',"kid":"') + 32 + len(b'","sig":"') + 128 + len(b'","v":1}')
_SIG = re.compile(r"[0-9a-f]{128}")


@dataclass(frozen=True, slots=True)
class SignedEvent:
    """An event with its gateway's Ed25519 signature, as carried on the wire.

    Wire bytes (one MQTT message) are the canonical JSON of::

        {"event": <event body>, "kid": <32 hex: signer key id>, "sig": <128 hex>, "v": 1}

    ``from_wire`` checks the shape only; ``pledgewatch.signing.verify_event`` checks the
    signature against a public key.
    """

    event: Event
    key_id: str
    signature: bytes
    # The body's canonical bytes, when already known (from_wire slices them out of the
    # verified-canonical wire): saves re-encoding for the event id and the signature check.
    body: bytes = field(default=b"", compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.body:
            object.__setattr__(self, "body", self.event.canonical())
        if not isinstance(self.key_id, str) or _KID.fullmatch(self.key_id) is None:
            raise ValidationError(f"kid: got {self.key_id!r}, want 32 lowercase hex digits")
        if not isinstance(self.signature, bytes) or len(self.signature) != 64:
            raise ValidationError("sig: want 64 bytes")

    @property
    def event_id(self) -> str:
        return hashlib.sha256(self.body).hexdigest()

    def to_wire(self) -> bytes:
        return self.wire_from_body(self.body, self.key_id, self.signature)

    @staticmethod
    def wire_from_body(body: bytes, key_id: str, signature: bytes) -> bytes:
        """The envelope's canonical bytes from the body's canonical bytes, without re-encoding.

        Canonical by construction: the keys ``event < kid < sig < v`` are already in order, and
        ``key_id`` and the hex signature need no escaping (callers pass checked values).
        """
        return b"".join(
            (
                b'{"event":',
                body,
                b',"kid":"',
                key_id.encode(),
                b'","sig":"',
                signature.hex().encode(),
                b'","v":',
                str(ENVELOPE_VERSION).encode(),
                b"}",
            )
        )

    @classmethod
    def from_wire(cls, data: bytes, *, max_bytes: int = 4096) -> SignedEvent:
        """Strictly decode wire bytes; raise ``EncodingError``/``ValidationError`` naming why."""
        value = canonical.decode(data, max_bytes=max_bytes)
        if not isinstance(value, dict) or set(value) != {"event", "kid", "sig", "v"}:
            got = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise ValidationError(f"envelope: got {got}, want keys event, kid, sig, v")
        if value["v"] != ENVELOPE_VERSION or isinstance(value["v"], bool):
            raise ValidationError(f"envelope v: got {value['v']!r}, want {ENVELOPE_VERSION}")
        sig = value["sig"]
        if not isinstance(sig, str) or _SIG.fullmatch(sig) is None:
            raise ValidationError("sig: want 128 lowercase hex digits")
        if not isinstance(value["kid"], str) or _KID.fullmatch(value["kid"]) is None:
            raise ValidationError(f"kid: got {value['kid']!r}, want 32 lowercase hex digits")
        # The wire is canonical (decode checked), so it is exactly '{"event":' + body + tail
        # with a fixed-length tail: the body bytes are a slice, no re-encoding needed.
        body = bytes(data[len(_WIRE_HEAD) : len(data) - _WIRE_TAIL_LEN])
        return cls(Event.from_dict(value["event"]), value["kid"], bytes.fromhex(sig), body)
