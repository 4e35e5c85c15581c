"""Fault kinds a scenario can inject, their typed specs, and parsing one ``[[faults]]`` table.

Reading-level faults change what devices report (the ``sim`` sensor driver applies them);
delivery-level faults change what reaches the wire after signing (only ``devices.sim.stream``
applies them). Every fault has ``at``, an offset from the scenario start; the keys per kind:

==================  =====================================================================
theft               lot, qty — an UNLOAD of the lot with no release reference
slow-drain          bay, for, grams — the bay's weight falls linearly by ``grams`` over
                    ``for``, with no UNLOAD (and stays down)
dropout             device, for — the device emits nothing, heartbeats included
clock-skew          device, skew (signed, e.g. ``-5m``), for (default: to the end)
tamper-alarm        device, reason — the device reports a TAMPER reading
gateway-offline     gateway, for — its messages arrive in order when it comes back
duplicate           gateway, device?, delay (default 2s) — one message delivered twice
reorder             gateway, device? — one message delivered after the device's next one
wrong-key           gateway, device? — one event signed with a key the anchor does not know
tampered-payload    gateway, device? — one message's event changed after signing
replay              gateway, device?, after — one message's exact bytes sent again later
==================  =====================================================================

Message faults hit the first message of the gateway (and device, if given) whose event
happened at or after ``at``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from devices.sim.timefmt import format_duration, parse_duration
from pledgewatch.events import MAX_TEXT
from pledgewatch.tomlconf import Fields


class FaultLevel(enum.Enum):
    READING = "reading"
    DELIVERY = "delivery"


class FaultKind(enum.Enum):
    THEFT = "theft"
    SLOW_DRAIN = "slow-drain"
    DROPOUT = "dropout"
    CLOCK_SKEW = "clock-skew"
    TAMPER_ALARM = "tamper-alarm"
    GATEWAY_OFFLINE = "gateway-offline"
    DUPLICATE = "duplicate"
    REORDER = "reorder"
    WRONG_KEY = "wrong-key"
    TAMPERED_PAYLOAD = "tampered-payload"
    REPLAY = "replay"

    @property
    def level(self) -> FaultLevel:
        return FaultLevel.READING if self in _READING_KINDS else FaultLevel.DELIVERY


_READING_KINDS = frozenset(
    {
        FaultKind.THEFT,
        FaultKind.SLOW_DRAIN,
        FaultKind.DROPOUT,
        FaultKind.CLOCK_SKEW,
        FaultKind.TAMPER_ALARM,
    }
)
MESSAGE_KINDS = frozenset(
    {
        FaultKind.DUPLICATE,
        FaultKind.REORDER,
        FaultKind.WRONG_KEY,
        FaultKind.TAMPERED_PAYLOAD,
        FaultKind.REPLAY,
    }
)


@dataclass(frozen=True, slots=True)
class Theft:
    kind: ClassVar[FaultKind] = FaultKind.THEFT
    index: int
    start_ms: int
    lot: str
    qty: int


@dataclass(frozen=True, slots=True)
class SlowDrain:
    kind: ClassVar[FaultKind] = FaultKind.SLOW_DRAIN
    index: int
    start_ms: int
    end_ms: int
    bay: str
    grams: int


@dataclass(frozen=True, slots=True)
class Dropout:
    kind: ClassVar[FaultKind] = FaultKind.DROPOUT
    index: int
    start_ms: int
    end_ms: int
    device: str


@dataclass(frozen=True, slots=True)
class ClockSkew:
    kind: ClassVar[FaultKind] = FaultKind.CLOCK_SKEW
    index: int
    start_ms: int
    end_ms: int
    device: str
    skew_ms: int


@dataclass(frozen=True, slots=True)
class TamperAlarm:
    kind: ClassVar[FaultKind] = FaultKind.TAMPER_ALARM
    index: int
    start_ms: int
    device: str
    reason: str


@dataclass(frozen=True, slots=True)
class GatewayOffline:
    kind: ClassVar[FaultKind] = FaultKind.GATEWAY_OFFLINE
    index: int
    start_ms: int
    end_ms: int
    gateway: str


@dataclass(frozen=True, slots=True)
class MessageFault:
    """duplicate / reorder / wrong-key / tampered-payload / replay on one message.

    ``delay_ms`` is when the copy goes out after the original (duplicate, replay); 0 otherwise.
    """

    kind: FaultKind
    index: int
    start_ms: int
    gateway: str
    device: str | None
    delay_ms: int


Fault = Theft | SlowDrain | Dropout | ClockSkew | TamperAlarm | GatewayOffline | MessageFault


@dataclass(frozen=True, slots=True)
class FaultContext:
    """What a fault may refer to; absolute times are ``start_ms + offset``."""

    start_ms: int
    duration_ms: int
    lots: frozenset[str]
    metered_bays: frozenset[str]
    device_gateway: dict[str, str]
    gateways: frozenset[str]


def parse_fault(f: Fields, index: int, ctx: FaultContext) -> Fault | None:
    """One ``[[faults]]`` table; problems go to ``f.problems`` (then the result is ``None``)."""
    before = len(f.problems)
    kinds = tuple(k.value for k in FaultKind)
    text = f.text("kind")
    if text not in kinds:
        if text:
            f.problems.append(f"{f.path}.kind: got {text!r}, want one of {', '.join(kinds)}")
        return None
    kind = FaultKind(text)
    at = duration(f, "at", low=0)
    if at >= ctx.duration_ms:
        f.problems.append(
            f"{f.path}.at: got {format_duration(at)}, want less than the scenario duration "
            f"{format_duration(ctx.duration_ms)}"
        )
    fault = _PARSERS[kind](f, kind, index, ctx.start_ms + at, ctx)
    f.finish()
    return fault if len(f.problems) == before else None


def duration(
    f: Fields, key: str, default: str | None = None, *, signed: bool = False, low: int = 1
) -> int:
    """A duration field in ms; a problem (and 0) when missing, unreadable or below ``low``."""
    text = f.text(key, default)
    if not text:
        return 0
    try:
        ms = parse_duration(text, signed=signed)
    except ValueError as exc:
        f.problems.append(f"{f.path}.{key}: {exc}")
        return 0
    if ms < low:
        f.problems.append(f"{f.path}.{key}: got {text!r}, want at least {format_duration(low)}")
    return ms


def _window_end(f: Fields, start_ms: int, ctx: FaultContext, *, required: bool = True) -> int:
    end_of_run = ctx.start_ms + ctx.duration_ms
    if not required and f.optional_text("for") is None:
        return end_of_run
    return min(start_ms + duration(f, "for"), end_of_run)


def _name(f: Fields, key: str, known: frozenset[str] | dict[str, str], what: str) -> str:
    value = f.text(key)
    if value and value not in known:
        f.problems.append(f"{f.path}.{key}: got {value!r}, want one of the scenario's {what}")
    return value


def _theft(f: Fields, kind: FaultKind, index: int, start: int, ctx: FaultContext) -> Fault:
    lot = _name(f, "lot", ctx.lots, "opening lots")
    return Theft(index, start, lot, f.integer("qty", low=1, high=10**9))


def _drain(f: Fields, kind: FaultKind, index: int, start: int, ctx: FaultContext) -> Fault:
    bay = _name(f, "bay", ctx.metered_bays, "bays with a load cell")
    end = _window_end(f, start, ctx)
    return SlowDrain(index, start, end, bay, f.integer("grams", low=1, high=10**12))


def _dropout(f: Fields, kind: FaultKind, index: int, start: int, ctx: FaultContext) -> Fault:
    device = _name(f, "device", ctx.device_gateway, "devices")
    return Dropout(index, start, _window_end(f, start, ctx), device)


def _skew(f: Fields, kind: FaultKind, index: int, start: int, ctx: FaultContext) -> Fault:
    device = _name(f, "device", ctx.device_gateway, "devices")
    before = len(f.problems)
    skew = duration(f, "skew", signed=True, low=-(10**12))
    if skew == 0 and len(f.problems) == before:
        f.problems.append(f"{f.path}.skew: want a non-zero offset")
    return ClockSkew(index, start, _window_end(f, start, ctx, required=False), device, skew)


def _tamper(f: Fields, kind: FaultKind, index: int, start: int, ctx: FaultContext) -> Fault:
    device = _name(f, "device", ctx.device_gateway, "devices")
    reason = f.text("reason", "tamper loop opened")
    if not 1 <= len(reason) <= MAX_TEXT or not reason.isprintable():
        f.problems.append(f"{f.path}.reason: want 1-{MAX_TEXT} printable characters")
    return TamperAlarm(index, start, device, reason)


def _offline(f: Fields, kind: FaultKind, index: int, start: int, ctx: FaultContext) -> Fault:
    gateway = _name(f, "gateway", ctx.gateways, "gateways")
    return GatewayOffline(index, start, _window_end(f, start, ctx), gateway)


def _message(f: Fields, kind: FaultKind, index: int, start: int, ctx: FaultContext) -> Fault:
    gateway = _name(f, "gateway", ctx.gateways, "gateways")
    device = f.optional_text("device")
    if device is not None and gateway and ctx.device_gateway.get(device) != gateway:
        f.problems.append(f"{f.path}.device: got {device!r}, want a device of gateway {gateway!r}")
    delay = 0
    if kind is FaultKind.DUPLICATE:
        delay = duration(f, "delay", "2s")
    elif kind is FaultKind.REPLAY:
        delay = duration(f, "after")
    return MessageFault(kind, index, start, gateway, device, delay)


_Parser = Callable[[Fields, FaultKind, int, int, FaultContext], Fault]
_PARSERS: dict[FaultKind, _Parser] = {
    FaultKind.THEFT: _theft,
    FaultKind.SLOW_DRAIN: _drain,
    FaultKind.DROPOUT: _dropout,
    FaultKind.CLOCK_SKEW: _skew,
    FaultKind.TAMPER_ALARM: _tamper,
    FaultKind.GATEWAY_OFFLINE: _offline,
    **{kind: _message for kind in MESSAGE_KINDS},
}
