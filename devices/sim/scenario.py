"""Warehouse scenarios: TOML files parsed once into frozen dataclasses.

Every problem in a file is reported in one ``ValidationError``, each naming the file and the
key path (``faults.toml: gateways[0].devices[2].bay: ...``). Unknown keys are problems.
The schema, with defaults, is documented in ``devices/sim/scenarios/README.md`` and shown by
the shipped scenarios; faults are described in ``devices.sim.faults``.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from devices.sim.faults import Fault, FaultContext, duration, parse_fault
from devices.sim.timefmt import DAY_MS, parse_utc
from pledgewatch.errors import ValidationError
from pledgewatch.events import MAX_TEXT
from pledgewatch.tomlconf import Fields, load_toml
from pledgewatch.topics import ID_PATTERN

MAX_DURATION_MS = 3650 * DAY_MS
ARRIVAL_LOT_PREFIX = "arr-"


class DeviceType(enum.Enum):
    RFID_IN = "rfid-in"
    RFID_OUT = "rfid-out"
    LOAD_CELL = "load-cell"
    DOOR = "door"


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    id: str
    type: DeviceType
    bay: str | None
    heartbeat_ms: int


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    id: str
    devices: tuple[DeviceSpec, ...]
    bays: tuple[str, ...]
    stocktake_device: str | None

    def of_type(self, kind: DeviceType) -> tuple[DeviceSpec, ...]:
        return tuple(d for d in self.devices if d.type is kind)


@dataclass(frozen=True, slots=True)
class Sku:
    id: str
    unit_grams: int


@dataclass(frozen=True, slots=True)
class LotSpec:
    id: str
    sku: str
    bay: str
    qty: int
    pledged: bool


@dataclass(frozen=True, slots=True)
class Traffic:
    arrivals_per_day: int
    departures_per_day: int
    pallet_qty_min: int
    pallet_qty_max: int
    door_open_ms: int
    stocktake_interval_ms: int


@dataclass(frozen=True, slots=True)
class LoadCells:
    interval_ms: int
    noise_grams: int
    drift_grams_per_day: int


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    seed: int
    start_ms: int
    duration_ms: int
    warehouse: str
    gateways: tuple[GatewaySpec, ...]
    skus: tuple[Sku, ...]
    lots: tuple[LotSpec, ...]
    traffic: Traffic
    load_cells: LoadCells
    faults: tuple[Fault, ...]

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.duration_ms

    def lot(self, lot_id: str) -> LotSpec:
        return next(lot for lot in self.lots if lot.id == lot_id)

    def gateway_of_bay(self, bay: str) -> GatewaySpec:
        return next(g for g in self.gateways if bay in g.bays)

    def gateway_of_device(self, device: str) -> GatewaySpec:
        return next(g for g in self.gateways if any(d.id == device for d in g.devices))

    def gateway(self, gateway_id: str) -> GatewaySpec:
        for g in self.gateways:
            if g.id == gateway_id:
                return g
        known = ", ".join(g.id for g in self.gateways)
        raise ValidationError(f"scenario {self.name}: gateway {gateway_id!r} not in ({known})")


def load_scenario(path: Path) -> Scenario:
    """Read and check a scenario file; raise one ``ValidationError`` naming every problem."""
    return parse_scenario(load_toml(path), path.name)


def shipped_scenarios() -> dict[str, Path]:
    """The scenarios shipped with the package, by name (``small``, ``faults``, ``clean-90d``)."""
    folder = resources.files("devices.sim") / "scenarios"
    return {Path(p.name).stem: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".toml")}


def find_scenario(text: str) -> Path:
    """``text`` as a path if that file exists, else the shipped scenario of that name."""
    path = Path(text)
    if path.exists():
        return path
    return shipped_scenarios().get(text, path)


def parse_scenario(raw: dict[str, Any], source: str) -> Scenario:
    """Check a decoded TOML document; ``source`` (the file name) starts every problem."""
    problems: list[str] = []
    root = Fields(raw, "", problems)
    scenario = _layout(root, source)
    faults = _faults(root.tables("faults"), scenario)
    root.finish()
    if problems:
        raise ValidationError(
            f"{len(problems)} problems in scenario {source}: "
            + "; ".join(f"{source}: {p.lstrip('.')}" for p in problems)
        )
    return dataclasses.replace(scenario, faults=faults)


def _layout(root: Fields, source: str) -> Scenario:
    """Everything but the faults (which refer to it)."""
    problems = root.problems
    duration_ms = duration(root, "duration")
    if duration_ms > MAX_DURATION_MS:
        problems.append("duration: want at most 3650d")
    gateway_tables = root.tables("gateways")
    gateway_ids = [_id(g, "id") for g in gateway_tables]
    bays = _bays(root.tables("bays"), set(gateway_ids))
    gateways = tuple(
        _gateway(g, gid, bays) for g, gid in zip(gateway_tables, gateway_ids, strict=True)
    )
    skus = _skus(root.tables("skus"))
    lots = _lots(root.tables("lots"), {s.id for s in skus}, set(bays))
    if not gateways:
        problems.append("gateways: want at least one [[gateways]] table")
    _unique(problems, "gateways", gateway_ids)
    _unique(problems, "devices", [d.id for g in gateways for d in g.devices])
    _unique(problems, "skus", [s.id for s in skus])
    _unique(problems, "lots", [lot.id for lot in lots])
    return Scenario(
        name=source,
        seed=root.integer("seed", low=0, high=2**63 - 1),
        start_ms=_instant(root, "start"),
        duration_ms=duration_ms,
        warehouse=_id(root, "warehouse"),
        gateways=gateways,
        skus=skus,
        lots=lots,
        traffic=_traffic(root.table("traffic", required=False)),
        load_cells=_load_cells(root.table("load_cells", required=False)),
        faults=(),
    )


def _instant(f: Fields, key: str) -> int:
    text = f.text(key)
    if not text:
        return 0
    try:
        return parse_utc(text)
    except ValueError as exc:
        f.problems.append(f"{f.path}.{key}: {exc}")
        return 0


def _id(f: Fields, key: str) -> str:
    value = f.text(key)
    if value and ID_PATTERN.fullmatch(value) is None:
        f.problems.append(f"{f.path}.{key}: got {value!r}, want an id of [a-z0-9][a-z0-9._-]*")
    return value


def _label(f: Fields, key: str) -> str:
    value = f.text(key)
    if value and (len(value) > MAX_TEXT or not value.isprintable()):
        f.problems.append(f"{f.path}.{key}: got {value!r}, want 1-{MAX_TEXT} printable chars")
    return value


def _unique(problems: list[str], what: str, ids: list[str]) -> None:
    seen: set[str] = set()
    for value in ids:
        if value and value in seen:
            problems.append(f"{what}: id {value!r} appears more than once")
        seen.add(value)


def _bays(tables: list[Fields], gateway_ids: set[str]) -> dict[str, str]:
    """Bay id -> the gateway that serves it."""
    bays: dict[str, str] = {}
    for f in tables:
        bay, gateway = _label(f, "id"), f.text("gateway")
        if gateway and gateway not in gateway_ids:
            f.problems.append(f"{f.path}.gateway: got {gateway!r}, want one of the gateways")
        if bay and bay in bays:
            f.problems.append(f"{f.path}.id: bay {bay!r} appears more than once")
        bays[bay] = gateway
        f.finish()
    return bays


def _gateway(f: Fields, gateway_id: str, bays: dict[str, str]) -> GatewaySpec:
    default_heartbeat = duration(f, "heartbeat", "1h")
    devices = tuple(_device(d, default_heartbeat) for d in f.tables("devices"))
    own_bays = tuple(b for b, g in bays.items() if g == gateway_id)
    stocktake = f.optional_text("stocktake_device")
    portals = {d.id for d in devices if d.type in (DeviceType.RFID_IN, DeviceType.RFID_OUT)}
    in_portals = [d.id for d in devices if d.type is DeviceType.RFID_IN]
    if stocktake is None and in_portals:
        stocktake = in_portals[0]
    elif stocktake is not None and stocktake not in portals:
        f.problems.append(f"{f.path}.stocktake_device: got {stocktake!r}, want an rfid device")
    metered: set[str] = set()
    for i, d in enumerate(devices):
        if d.type is not DeviceType.LOAD_CELL or not d.bay:
            continue
        if d.bay not in own_bays:
            f.problems.append(f"{f.path}.devices[{i}].bay: {d.bay!r} is not a bay of this gateway")
        if d.bay in metered:
            f.problems.append(f"{f.path}.devices[{i}].bay: {d.bay!r} has a load cell already")
        metered.add(d.bay)
    kinds = {d.type for d in devices}
    if own_bays and not {DeviceType.RFID_IN, DeviceType.RFID_OUT} <= kinds:
        f.problems.append(f"{f.path}: serves bays, so it needs an rfid-in and an rfid-out device")
    f.finish()
    return GatewaySpec(gateway_id, devices, own_bays, stocktake)


def _device(f: Fields, default_heartbeat: int) -> DeviceSpec:
    device_id = _id(f, "id")
    kind = DeviceType(f.choice("type", tuple(t.value for t in DeviceType)))
    bay: str | None = None
    if kind is DeviceType.LOAD_CELL:
        bay = _label(f, "bay")
    elif kind is DeviceType.DOOR:
        bay = f.optional_text("bay")
    heartbeat = duration(f, "heartbeat") if f.optional_text("heartbeat") else default_heartbeat
    f.finish()
    return DeviceSpec(device_id, kind, bay, heartbeat)


def _skus(tables: list[Fields]) -> tuple[Sku, ...]:
    skus = []
    for f in tables:
        skus.append(Sku(_label(f, "id"), f.integer("unit_grams", low=1, high=10**9)))
        f.finish()
    return tuple(skus)


def _lots(tables: list[Fields], skus: set[str], bays: set[str]) -> tuple[LotSpec, ...]:
    lots = []
    for f in tables:
        lot = LotSpec(
            id=_label(f, "id"),
            sku=f.text("sku"),
            bay=f.text("bay"),
            qty=f.integer("qty", low=1, high=10**9),
            pledged=f.boolean("pledged", False),
        )
        if lot.id.startswith(ARRIVAL_LOT_PREFIX):
            f.problems.append(f"{f.path}.id: {ARRIVAL_LOT_PREFIX}* is reserved for arriving lots")
        if lot.sku and lot.sku not in skus:
            f.problems.append(f"{f.path}.sku: got {lot.sku!r}, want one of the skus")
        if lot.bay and lot.bay not in bays:
            f.problems.append(f"{f.path}.bay: got {lot.bay!r}, want one of the bays")
        lots.append(lot)
        f.finish()
    return tuple(lots)


def _traffic(f: Fields) -> Traffic:
    traffic = Traffic(
        arrivals_per_day=f.integer("arrivals_per_day", 0, low=0, high=10_000),
        departures_per_day=f.integer("departures_per_day", 0, low=0, high=10_000),
        pallet_qty_min=f.integer("pallet_qty_min", 1, low=1, high=10**6),
        pallet_qty_max=f.integer("pallet_qty_max", 10, low=1, high=10**6),
        door_open_ms=duration(f, "door_open", "2m", low=2),
        stocktake_interval_ms=duration(f, "stocktake_interval", "24h", low=60_000),
    )
    if traffic.pallet_qty_min > traffic.pallet_qty_max:
        f.problems.append(f"{f.path}: pallet_qty_min exceeds pallet_qty_max")
    f.finish()
    return traffic


def _load_cells(f: Fields) -> LoadCells:
    cells = LoadCells(
        interval_ms=duration(f, "interval", "15m", low=1000),
        noise_grams=f.integer("noise_grams", 0, low=0, high=10**9),
        drift_grams_per_day=f.integer("drift_grams_per_day", 0, low=-(10**9), high=10**9),
    )
    f.finish()
    return cells


def _faults(tables: list[Fields], scenario: Scenario) -> tuple[Fault, ...]:
    ctx = FaultContext(
        start_ms=scenario.start_ms,
        duration_ms=max(scenario.duration_ms, 1),
        lots=frozenset(lot.id for lot in scenario.lots),
        metered_bays=frozenset(
            d.bay for g in scenario.gateways for d in g.of_type(DeviceType.LOAD_CELL) if d.bay
        ),
        device_gateway={d.id: g.id for g in scenario.gateways for d in g.devices},
        gateways=frozenset(g.id for g in scenario.gateways),
    )
    parsed = [parse_fault(f, i, ctx) for i, f in enumerate(tables)]
    return tuple(fault for fault in parsed if fault is not None)
