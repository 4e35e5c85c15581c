"""The pallet movements of a scenario: arrivals, departures and thefts, in time order.

Each day gets ``arrivals_per_day`` arrivals and ``departures_per_day`` departures at uniformly
random instants. They are taken in time order against the running stock:

* an arrival is a new lot (``arr-000001``, …) of a random SKU into a random bay, one pallet of
  ``pallet_qty_min..max`` units, through one of its gateway's ``rfid-in`` portals (LOAD);
* a departure takes one pallet (at most what is left) of a random lot that has stock, through
  an ``rfid-out`` portal (UNLOAD); a pledged lot's departure carries the next release
  reference ``rel-000001``, … (the bank authorised it);
* a theft fault is an UNLOAD of its lot with no release reference.

Every movement opens a door of the gateway (if it has doors) for ``door_open``; the portal
reads the pallet half-way through. One gateway's dock handles one movement at a time, so a
movement waits until the previous one's door has closed (plus ``DOCK_GAP_MS``); per bay the
physical order is therefore the planned order. Movements that would end after the scenario
are dropped (a theft that cannot happen is an error).
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

from devices.sim import seeding
from devices.sim.faults import Theft
from devices.sim.scenario import ARRIVAL_LOT_PREFIX, DeviceType, LotSpec, Scenario
from devices.sim.timefmt import DAY_MS, format_utc
from pledgewatch.errors import ValidationError
from pledgewatch.events import Kind

DOCK_GAP_MS = 1000


@dataclass(frozen=True, slots=True)
class Movement:
    open_ms: int
    read_ms: int
    close_ms: int
    kind: Kind
    gateway: str
    portal: str
    door: str | None
    bay: str
    sku: str
    lot: str
    qty: int
    release: str | None
    fault: int | None


@dataclass(frozen=True, slots=True)
class Plan:
    movements: tuple[Movement, ...]
    lots: tuple[LotSpec, ...]


class _Action(enum.Enum):
    ARRIVE = 0
    DEPART = 1
    THEFT = 2


def plan_traffic(scenario: Scenario) -> Plan:
    """All movements of the scenario (every gateway), sorted by portal read time."""
    rng = seeding.rng(scenario.seed, "traffic")
    planner = _Planner(scenario, rng)
    for at_ms, _, action, theft in _schedule(scenario, rng):
        if action is _Action.ARRIVE:
            planner.arrive(at_ms)
        elif action is _Action.DEPART:
            planner.depart(at_ms)
        elif theft is not None:
            planner.steal(theft)
    movements = sorted(planner.movements, key=lambda m: m.read_ms)
    return Plan(tuple(movements), tuple(planner.lots.values()))


def _schedule(
    scenario: Scenario, rng: random.Random
) -> list[tuple[int, int, _Action, Theft | None]]:
    traffic = scenario.traffic
    actions: list[tuple[int, int, _Action, Theft | None]] = []
    days = -(-scenario.duration_ms // DAY_MS)
    for day in range(days):
        base = scenario.start_ms + day * DAY_MS
        for action, count in (
            (_Action.ARRIVE, traffic.arrivals_per_day),
            (_Action.DEPART, traffic.departures_per_day),
        ):
            for _ in range(count):
                at_ms = base + rng.randrange(DAY_MS)
                if at_ms < scenario.end_ms:
                    actions.append((at_ms, len(actions), action, None))
    for fault in scenario.faults:
        if isinstance(fault, Theft):
            actions.append((fault.start_ms, len(actions), _Action.THEFT, fault))
    actions.sort(key=lambda a: (a[0], a[1]))
    return actions


class _Planner:
    def __init__(self, scenario: Scenario, rng: random.Random) -> None:
        self.scenario = scenario
        self.rng = rng
        self.lots: dict[str, LotSpec] = {lot.id: lot for lot in scenario.lots}
        self.stock: dict[str, int] = {lot.id: lot.qty for lot in scenario.lots}
        self.bay_gateway = {bay: g for g in scenario.gateways for bay in g.bays}
        self.bays = sorted(self.bay_gateway)
        self.free_at = {g.id: scenario.start_ms for g in scenario.gateways}
        self.movements: list[Movement] = []
        self.arrivals = 0
        self.releases = 0

    def arrive(self, at_ms: int) -> None:
        if not self.bays or not self.scenario.skus:
            return
        sku = self.rng.choice(self.scenario.skus)
        bay = self.rng.choice(self.bays)
        qty = self._pallet()
        lot = LotSpec(f"{ARRIVAL_LOT_PREFIX}{self.arrivals + 1:06d}", sku.id, bay, qty, False)
        if self._move(at_ms, Kind.LOAD, lot, qty):
            self.arrivals += 1
            self.lots[lot.id] = lot
            self.stock[lot.id] = qty

    def depart(self, at_ms: int) -> None:
        candidates = [lot for lot, qty in self.stock.items() if qty > 0]
        if not candidates:
            return
        lot = self.lots[self.rng.choice(candidates)]
        qty = min(self.stock[lot.id], self._pallet())
        release = f"rel-{self.releases + 1:06d}" if lot.pledged else None
        if self._move(at_ms, Kind.UNLOAD, lot, qty, release=release):
            self.stock[lot.id] -= qty
            if release is not None:
                self.releases += 1

    def steal(self, fault: Theft) -> None:
        lot = self.lots[fault.lot]
        qty = min(fault.qty, self.stock[lot.id])
        when = format_utc(fault.start_ms)
        if qty == 0:
            raise ValidationError(
                f"scenario {self.scenario.name}: faults[{fault.index}]: lot {lot.id} has no "
                f"stock left to steal at {when}"
            )
        if not self._move(fault.start_ms, Kind.UNLOAD, lot, qty, fault=fault.index):
            raise ValidationError(
                f"scenario {self.scenario.name}: faults[{fault.index}]: theft at {when} cannot "
                "pass the dock before the scenario ends"
            )
        self.stock[lot.id] -= qty

    def _pallet(self) -> int:
        t = self.scenario.traffic
        return self.rng.randint(t.pallet_qty_min, t.pallet_qty_max)

    def _move(
        self,
        at_ms: int,
        kind: Kind,
        lot: LotSpec,
        qty: int,
        *,
        release: str | None = None,
        fault: int | None = None,
    ) -> bool:
        gateway = self.bay_gateway[lot.bay]
        portal_type = DeviceType.RFID_IN if kind is Kind.LOAD else DeviceType.RFID_OUT
        portal = self.rng.choice(gateway.of_type(portal_type)).id
        doors = gateway.of_type(DeviceType.DOOR)
        door = self.rng.choice(doors).id if doors else None
        door_open = self.scenario.traffic.door_open_ms
        open_ms = max(at_ms, self.free_at[gateway.id])
        close_ms = open_ms + door_open
        if close_ms >= self.scenario.end_ms:
            return False
        self.free_at[gateway.id] = close_ms + DOCK_GAP_MS
        self.movements.append(
            Movement(
                open_ms,
                open_ms + door_open // 2,
                close_ms,
                kind,
                gateway.id,
                portal,
                door,
                lot.bay,
                lot.sku,
                lot.id,
                qty,
                release,
                fault,
            )
        )
        return True


def bay_weights(scenario: Scenario, plan: Plan) -> dict[str, list[tuple[int, int]]]:
    """Per bay, the true goods weight as steps ``(from_ms, grams)``, starting at the start."""
    unit = {sku.id: sku.unit_grams for sku in scenario.skus}
    grams = {bay: 0 for g in scenario.gateways for bay in g.bays}
    for lot in scenario.lots:
        grams[lot.bay] += lot.qty * unit[lot.sku]
    steps = {bay: [(scenario.start_ms, total)] for bay, total in grams.items()}
    for m in plan.movements:
        sign = 1 if m.kind is Kind.LOAD else -1
        grams[m.bay] += sign * m.qty * unit[m.sku]
        steps[m.bay].append((m.read_ms, grams[m.bay]))
    return steps
