"""What a scenario puts on the wire: signed, chained events per gateway, delivery faults on.

Each gateway turns its readings into events exactly as a real gateway does: per device,
``seq`` counts gaplessly from 1 and ``prev`` is the previous event's id (``ZERO_HASH`` for
seq 1); each event is signed with the gateway's key and sent on ``events_topic``. A message
normally arrives at the instant its reading happened (``at_ms``); delivery faults change that
(see ``devices.sim.faults``):

* gateway-offline: messages from the window arrive, in order, when the window ends;
* duplicate / replay: the same bytes again ``delay`` / ``after`` later;
* reorder: the message arrives right after the same device's next message;
* wrong-key: the event is signed by an impostor key (``seeding.derive_key(seed,
  "wrong/<gateway>")``) instead of the gateway's;
* tampered-payload: the event is changed after signing (qty + 1, else grams + 1000, else
  ts_ms + 1) and sent with the original signature.

The chain itself is never broken by a delivery fault: the next event's ``prev`` still names
the original event's id. ``WireStream.ground_truth()`` then says, per fault, which event ids
it touched and at which positions (0-based, in the order ``__iter__`` yields) the messages it
made, moved or marked went out.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from devices.sim import seeding
from devices.sim.faults import (
    MESSAGE_KINDS,
    ClockSkew,
    Dropout,
    Fault,
    FaultKind,
    GatewayOffline,
    MessageFault,
    SlowDrain,
    TamperAlarm,
    Theft,
)
from devices.sim.model import SimReading, simulate
from devices.sim.scenario import DeviceType, Scenario
from pledgewatch.errors import ValidationError
from pledgewatch.events import ZERO_HASH, Event, SignedEvent
from pledgewatch.signing import SigningKey, sign_event
from pledgewatch.topics import events_topic

MUST_FIRE = MESSAGE_KINDS | {FaultKind.THEFT, FaultKind.TAMPER_ALARM}
_WINDOWED = (SlowDrain, Dropout, ClockSkew, GatewayOffline)


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One MQTT message as the anchor would receive it."""

    at_ms: int
    topic: str
    payload: bytes
    gateway: str
    fault: FaultKind | None


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """Ground truth for one ``[[faults]]`` entry (``index`` is its position in the file)."""

    index: int
    kind: FaultKind
    gateway: str
    device: str | None
    start_ms: int
    end_ms: int
    event_ids: tuple[str, ...]
    messages: tuple[int, ...]
    detail: str


@dataclass(frozen=True, slots=True)
class _Pending:
    at_ms: int
    payload: bytes
    gateway: str
    fault: FaultKind | None
    marks: tuple[int, ...]


@dataclass(slots=True)
class _Truth:
    device: str | None
    event_ids: list[str] = dataclasses.field(default_factory=list)
    messages: list[int] = dataclasses.field(default_factory=list)
    detail: str = ""


class WireStream:
    """The scenario's messages, in delivery order. The constructor does no work; iterate once,
    then read ``ground_truth()``. Keys default to ``seeding.derive_key(seed, gateway)``."""

    def __init__(
        self,
        scenario: Scenario,
        keys: Mapping[str, SigningKey] | None = None,
        gateway: str | None = None,
    ) -> None:
        self.scenario = scenario
        self.only = gateway
        self.gateways = scenario.gateways if gateway is None else (scenario.gateway(gateway),)
        ids = [g.id for g in self.gateways]
        if keys is None:
            keys = {g: seeding.derive_key(scenario.seed, g) for g in ids}
        missing = [g for g in ids if g not in keys]
        if missing:
            raise ValidationError(f"wire stream: no signing key for gateways {missing}")
        self.keys = {g: keys[g] for g in ids}
        self.impostors = {g: seeding.derive_key(scenario.seed, f"wrong/{g}") for g in ids}
        self.faults = {f.index: f for f in scenario.faults if _gateway_of(scenario, f) in ids}
        self._topics = {g: events_topic(scenario.warehouse, g) for g in ids}
        self._truth: dict[int, _Truth] = {}
        self._done = False

    def public_keys(self) -> dict[str, bytes]:
        """Gateway id -> the Ed25519 public key the anchor should have enrolled."""
        return {g: key.public_key for g, key in self.keys.items()}

    def __iter__(self) -> Iterator[SimMessage]:
        return self._run()

    def ground_truth(self) -> tuple[FaultRecord, ...]:
        if not self._done:
            raise RuntimeError("ground truth is complete only after the stream has been read")
        return tuple(self._record(i, t) for i, t in sorted(self._truth.items()))

    def _run(self) -> Iterator[SimMessage]:
        self._done = False
        self._truth = {
            i: _Truth(_device_of(self.scenario, f), detail=_describe(f))
            for i, f in self.faults.items()
        }
        waiting = [f for f in self.faults.values() if isinstance(f, MessageFault)]
        chains: dict[tuple[str, str], tuple[int, str]] = {}
        held: dict[tuple[str, str], tuple[_Pending, int]] = {}
        heap: list[tuple[int, int, _Pending]] = []
        order, position = itertools.count(), itertools.count()
        for sr in simulate(self.scenario, self.only):
            while heap and heap[0][0] < sr.at_ms:
                yield self._emit(heapq.heappop(heap)[2], next(position))
            link = (sr.gateway, sr.reading.device)
            seq, prev = chains.get(link, (0, ZERO_HASH))
            event = sr.reading.to_event(self.scenario.warehouse, sr.gateway, seq + 1, prev)
            event_id = event.event_id()
            chains[link] = (seq + 1, event_id)
            firing = [f for f in waiting if _hits(f, sr)]
            waiting = [f for f in waiting if f not in firing]
            for item in self._deliver(sr, event, event_id, firing, held):
                heapq.heappush(heap, (item.at_ms, next(order), item))
        for item, _ in held.values():
            heapq.heappush(heap, (item.at_ms, next(order), item))
        while heap:
            yield self._emit(heapq.heappop(heap)[2], next(position))
        self._check_fired(held)
        self._done = True

    def _deliver(
        self,
        sr: SimReading,
        event: Event,
        event_id: str,
        firing: list[MessageFault],
        held: dict[tuple[str, str], tuple[_Pending, int]],
    ) -> list[_Pending]:
        gateway, device = sr.gateway, sr.reading.device
        signed = sign_event(event, self.keys[gateway])
        first = self.faults[sr.faults[0]].kind if sr.faults else None
        primary = _Pending(sr.at_ms, signed.to_wire(), gateway, first, sr.faults)
        for index in sr.faults:
            self._truth[index].event_ids.append(event_id)
            self._truth[index].device = device
        copies: list[_Pending] = []
        for f in firing:
            truth = self._truth[f.index]
            truth.event_ids.append(event_id)
            truth.device = device
            primary, copy = self._apply(f, primary, event, signed)
            if copy is not None:
                copies.append(copy)
        out = [self._offline(p, event_id) for p in (primary, *copies)]
        released = held.pop((gateway, device), None)
        if released is not None:
            late, reorder = released
            out.insert(1, dataclasses.replace(late, at_ms=max(late.at_ms, out[0].at_ms)))
            self._truth[reorder].event_ids.append(event_id)
            self._truth[reorder].detail = f"delivered after the device's next event {event_id}"
        for f in firing:
            if f.kind is FaultKind.REORDER:
                held[(gateway, device)] = (out.pop(0), f.index)
        return out

    def _apply(
        self, f: MessageFault, primary: _Pending, event: Event, signed: SignedEvent
    ) -> tuple[_Pending, _Pending | None]:
        """The primary message after fault ``f``, and the extra copy ``f`` sends (if any)."""
        marked = dataclasses.replace(primary, fault=f.kind, marks=(*primary.marks, f.index))
        truth = self._truth[f.index]
        if f.kind is FaultKind.WRONG_KEY:
            impostor = self.impostors[primary.gateway]
            truth.detail = f"signed by impostor key {impostor.key_id}"
            return dataclasses.replace(marked, payload=sign_event(event, impostor).to_wire()), None
        if f.kind is FaultKind.TAMPERED_PAYLOAD:
            changed, what = _tamper(event)
            truth.detail = f"{what}; wire event id {changed.event_id()}"
            forged = SignedEvent(changed, signed.key_id, signed.signature).to_wire()
            return dataclasses.replace(marked, payload=forged), None
        if f.kind is FaultKind.REORDER:
            return marked, None
        truth.detail = f"same bytes again {f.delay_ms} ms later"
        copy = _Pending(
            primary.at_ms + f.delay_ms, primary.payload, primary.gateway, f.kind, (f.index,)
        )
        return primary, copy

    def _offline(self, item: _Pending, event_id: str) -> _Pending:
        for f in self.faults.values():
            if not isinstance(f, GatewayOffline) or f.gateway != item.gateway:
                continue
            if f.start_ms <= item.at_ms < f.end_ms:
                ids = self._truth[f.index].event_ids
                if not ids or ids[-1] != event_id:
                    ids.append(event_id)
                fault = item.fault or f.kind
                item = _Pending(f.end_ms, item.payload, item.gateway, fault, (*item.marks, f.index))
        return item

    def _emit(self, item: _Pending, position: int) -> SimMessage:
        for index in item.marks:
            self._truth[index].messages.append(position)
        return SimMessage(
            item.at_ms, self._topics[item.gateway], item.payload, item.gateway, item.fault
        )

    def _check_fired(self, held: dict[tuple[str, str], tuple[_Pending, int]]) -> None:
        problems = [
            f"faults[{i}] ({f.kind.value}) never fired"
            for i, f in self.faults.items()
            if f.kind in MUST_FIRE and not self._truth[i].event_ids
        ]
        problems.extend(
            f"faults[{index}] (reorder): device {device} sent nothing afterwards"
            for (_, device), (_, index) in held.items()
        )
        if problems:
            raise ValidationError(f"scenario {self.scenario.name}: " + "; ".join(problems))

    def _record(self, index: int, truth: _Truth) -> FaultRecord:
        f = self.faults[index]
        return FaultRecord(
            index=index,
            kind=f.kind,
            gateway=_gateway_of(self.scenario, f),
            device=truth.device,
            start_ms=f.start_ms,
            end_ms=f.end_ms if isinstance(f, _WINDOWED) else f.start_ms,
            event_ids=tuple(truth.event_ids),
            messages=tuple(truth.messages),
            detail=truth.detail,
        )


def _hits(f: MessageFault, sr: SimReading) -> bool:
    return (
        f.gateway == sr.gateway and f.device in (None, sr.reading.device) and sr.at_ms >= f.start_ms
    )


def _tamper(event: Event) -> tuple[Event, str]:
    if event.qty is not None:
        return dataclasses.replace(event, qty=event.qty + 1), f"qty {event.qty} -> {event.qty + 1}"
    if event.grams is not None:
        new = event.grams + 1000
        return dataclasses.replace(event, grams=new), f"grams {event.grams} -> {new}"
    return dataclasses.replace(event, ts_ms=event.ts_ms + 1), f"ts_ms {event.ts_ms} -> +1"


def _gateway_of(scenario: Scenario, f: Fault) -> str:
    """The gateway whose devices or messages a fault touches."""
    if isinstance(f, GatewayOffline | MessageFault):
        return f.gateway
    if isinstance(f, Theft):
        return scenario.gateway_of_bay(scenario.lot(f.lot).bay).id
    if isinstance(f, SlowDrain):
        return scenario.gateway_of_bay(f.bay).id
    return scenario.gateway_of_device(f.device).id


def _device_of(scenario: Scenario, f: Fault) -> str | None:
    """The device a fault is about, if the spec names it (a theft's portal is seen later)."""
    if isinstance(f, Dropout | ClockSkew | TamperAlarm | MessageFault):
        return f.device
    if isinstance(f, SlowDrain):
        cells = scenario.gateway_of_bay(f.bay).of_type(DeviceType.LOAD_CELL)
        return next(d.id for d in cells if d.bay == f.bay)
    return None


def _describe(f: Fault) -> str:
    if isinstance(f, Theft):
        return f"lot {f.lot}: {f.qty} units leave with no release"
    if isinstance(f, SlowDrain):
        return f"bay {f.bay}: weight falls {f.grams} g over the window, no UNLOAD"
    if isinstance(f, ClockSkew):
        return f"timestamps offset by {f.skew_ms} ms"
    if isinstance(f, TamperAlarm):
        return f"TAMPER: {f.reason}"
    if isinstance(f, Dropout):
        return "device silent, heartbeats included"
    if isinstance(f, GatewayOffline):
        return "messages delayed to the end of the window, in order"
    return ""
