"""The warehouse model: every device's readings over simulated time, reading-level faults on.

What each device reports (all times simulated; the wall clock is never read):

* every device: HEARTBEAT at the start and every ``heartbeat`` after;
* ``rfid-in`` / ``rfid-out`` portals: LOAD / UNLOAD for each pallet that passes
  (``devices.sim.traffic``); the gateway's stocktake device also reports COUNT for every lot
  in the gateway's bays at the start (the opening stocktake) and every ``stocktake_interval``
  (a lot that has gone to zero is counted once more, with qty 0);
* ``door``: OPEN when a movement starts, CLOSED when it ends;
* ``load-cell``: WEIGHT every ``interval``: the bay's goods (units × unit grams)
  + ``drift_grams_per_day`` × elapsed days (integer, floored) + uniform noise in
  ``±noise_grams`` − any slow drain;
* TAMPER only from a ``tamper-alarm`` fault.

Readings come out in simulated-time order (``SimReading.at_ms``); ties keep gateway order,
then device order, then the device's own order (data first, its heartbeat last).
``Reading.ts_ms`` equals ``at_ms`` except under a clock-skew fault.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from devices.base import Reading
from devices.sim import seeding
from devices.sim.faults import ClockSkew, Dropout, SlowDrain, TamperAlarm
from devices.sim.scenario import DeviceSpec, DeviceType, GatewaySpec, Scenario
from devices.sim.timefmt import DAY_MS
from devices.sim.traffic import Movement, Plan, bay_weights, plan_traffic
from pledgewatch.events import DoorState, Kind


@dataclass(frozen=True, slots=True)
class SimReading:
    """A reading with the simulated instant it happened and the gateway that receives it.

    ``faults`` lists the indexes (into ``Scenario.faults``) of reading-level faults that made
    or changed this reading.
    """

    at_ms: int
    gateway: str
    reading: Reading
    faults: tuple[int, ...] = ()


def simulate(scenario: Scenario, gateway: str | None = None) -> Iterator[SimReading]:
    """Every reading of the scenario (or of one gateway), in simulated-time order."""
    model = _Model(scenario, plan_traffic(scenario))
    gateways = scenario.gateways if gateway is None else (scenario.gateway(gateway),)
    streams = [model.device_stream(g, d) for g in gateways for d in g.devices]
    return heapq.merge(*streams, key=_at)


def _at(item: SimReading) -> int:
    return item.at_ms


class _Model:
    def __init__(self, scenario: Scenario, plan: Plan) -> None:
        self.scenario = scenario
        self.plan = plan
        self.weights = bay_weights(scenario, plan)
        self.by_device: defaultdict[str, list[Movement]] = defaultdict(list)
        for m in plan.movements:
            self.by_device[m.portal].append(m)
            if m.door is not None:
                self.by_device[m.door].append(m)

    def device_stream(self, g: GatewaySpec, d: DeviceSpec) -> Iterator[SimReading]:
        sources: list[Iterable[SimReading]] = []
        if d.type in (DeviceType.RFID_IN, DeviceType.RFID_OUT):
            sources.append(self._portal(g, d))
        elif d.type is DeviceType.DOOR:
            sources.append(self._door(g, d))
        elif d.type is DeviceType.LOAD_CELL:
            sources.append(self._weights(g, d))
        if d.id == g.stocktake_device:
            sources.append(self._counts(g, d))
        sources.append(self._tamper_alarms(g, d))
        sources.append(self._heartbeats(g, d))
        merged = heapq.merge(*sources, key=_at)
        dropouts = [f for f in self.scenario.faults if isinstance(f, Dropout) and f.device == d.id]
        skews = [f for f in self.scenario.faults if isinstance(f, ClockSkew) and f.device == d.id]
        return _faulted(merged, dropouts, skews) if dropouts or skews else merged

    def _heartbeats(self, g: GatewaySpec, d: DeviceSpec) -> Iterator[SimReading]:
        for t in range(self.scenario.start_ms, self.scenario.end_ms, d.heartbeat_ms):
            yield SimReading(t, g.id, Reading(d.id, Kind.HEARTBEAT, t))

    def _portal(self, g: GatewaySpec, d: DeviceSpec) -> Iterator[SimReading]:
        for m in self.by_device[d.id]:
            reading = Reading(
                d.id,
                m.kind,
                m.read_ms,
                bay=m.bay,
                sku=m.sku,
                lot=m.lot,
                qty=m.qty,
                release=m.release,
            )
            yield SimReading(m.read_ms, g.id, reading, () if m.fault is None else (m.fault,))

    def _door(self, g: GatewaySpec, d: DeviceSpec) -> Iterator[SimReading]:
        for m in self.by_device[d.id]:
            for t, state in ((m.open_ms, DoorState.OPEN), (m.close_ms, DoorState.CLOSED)):
                yield SimReading(t, g.id, Reading(d.id, Kind.DOOR, t, bay=d.bay, door=state))

    def _weights(self, g: GatewaySpec, d: DeviceSpec) -> Iterator[SimReading]:
        assert d.bay is not None  # load cells always name their bay
        s, cells = self.scenario, self.scenario.load_cells
        steps = self.weights[d.bay]
        drains = [f for f in s.faults if isinstance(f, SlowDrain) and f.bay == d.bay]
        noise = seeding.rng(s.seed, f"noise/{d.id}")
        i = 0
        for t in range(s.start_ms, s.end_ms, cells.interval_ms):
            while i + 1 < len(steps) and steps[i + 1][0] <= t:
                i += 1
            grams = steps[i][1] + cells.drift_grams_per_day * (t - s.start_ms) // DAY_MS
            if cells.noise_grams:
                grams += noise.randint(-cells.noise_grams, cells.noise_grams)
            tags: tuple[int, ...] = ()
            for f in drains:
                if t > f.start_ms:
                    grams -= f.grams * (min(t, f.end_ms) - f.start_ms) // (f.end_ms - f.start_ms)
                if f.start_ms <= t < f.end_ms:
                    tags = (*tags, f.index)
            yield SimReading(t, g.id, Reading(d.id, Kind.WEIGHT, t, bay=d.bay, grams=grams), tags)

    def _counts(self, g: GatewaySpec, d: DeviceSpec) -> Iterator[SimReading]:
        s = self.scenario
        order = {bay: i for i, bay in enumerate(g.bays)}
        lots = sorted(
            (lot for lot in self.plan.lots if lot.bay in order), key=lambda x: (order[x.bay], x.id)
        )
        qty = {lot.id: lot.qty for lot in s.lots if lot.bay in g.bays}
        changes = [m for m in self.plan.movements if m.gateway == g.id]
        i, counted = 0, set[str]()
        for t in range(s.start_ms, s.end_ms, s.traffic.stocktake_interval_ms):
            while i < len(changes) and changes[i].read_ms <= t:
                m = changes[i]
                qty[m.lot] = qty.get(m.lot, 0) + (m.qty if m.kind is Kind.LOAD else -m.qty)
                i += 1
            for lot in lots:
                n = qty.get(lot.id, 0)
                if n > 0 or lot.id in counted:
                    reading = Reading(
                        d.id, Kind.COUNT, t, bay=lot.bay, sku=lot.sku, lot=lot.id, qty=n
                    )
                    yield SimReading(t, g.id, reading)
            counted = {lot for lot, n in qty.items() if n > 0}

    def _tamper_alarms(self, g: GatewaySpec, d: DeviceSpec) -> list[SimReading]:
        alarms = [
            f for f in self.scenario.faults if isinstance(f, TamperAlarm) and f.device == d.id
        ]
        return [
            SimReading(
                f.start_ms,
                g.id,
                Reading(d.id, Kind.TAMPER, f.start_ms, bay=d.bay, reason=f.reason),
                (f.index,),
            )
            for f in sorted(alarms, key=lambda f: f.start_ms)
        ]


def _faulted(
    items: Iterable[SimReading], dropouts: list[Dropout], skews: list[ClockSkew]
) -> Iterator[SimReading]:
    for item in items:
        if any(f.start_ms <= item.at_ms < f.end_ms for f in dropouts):
            continue
        out = item
        for f in skews:
            if f.start_ms <= item.at_ms < f.end_ms:
                ts = max(0, out.reading.ts_ms + f.skew_ms)
                reading = dataclasses.replace(out.reading, ts_ms=ts)
                out = SimReading(out.at_ms, out.gateway, reading, (*out.faults, f.index))
        yield out
