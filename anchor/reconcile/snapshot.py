"""The reconciler's view of the warehouses: one ``Snapshot`` type shared by both modes.

``state.IncrementalState`` (continuous: one verified event at a time) and
``batch.snapshot_from_frame`` (pandas, over the whole history) build the same ``Snapshot`` from
the same set of events, whatever order the events arrived in; ``rules.evaluate`` reads it.

**Event order.** Everything that depends on order uses ``order_key``:
``(ts_ms, rank, gateway, device, seq, event_id)`` with rank LOAD/UNLOAD 0, COUNT 1, WEIGHT 2,
others 3 — a stocktake or a weighing at the same millisecond as a movement is taken to include
it. ``ts_ms`` is what the device signed; a device whose clock runs backwards is taken at its
word (its ``seq`` chain and ``anchor.chain`` keep the true signing order as evidence). The
per-device "latest" values (last heartbeat) follow ``seq``, not ``ts_ms``.

**What a snapshot holds**, per warehouse:

- ``stock``: book stock per (bay, lot, sku) — the latest COUNT of that lot in that bay sets it
  (a stocktake), every later LOAD adds and UNLOAD subtracts; with the COUNT and the movements
  since it as the stock-setting evidence.
- ``unloads``: every UNLOAD (of the watched lots, see ``StateConfig.watch_lots``), in order.
- ``weights``: per metered bay, the latest WEIGHT and since when the load cells have disagreed
  with the book (book stock × unit grams at each weighing) without a break. Only weighings in
  the bay's *window* count: ``ts_ms >= newest ts of any event of the bay − weight_window_ms``.
  Older ones are forgotten (by both modes), so a run of disagreement longer than the window
  reports the window's first weighing as its start.
- ``devices``: per device, its first event and its last heartbeat (highest ``seq``).
- ``tampers``: every TAMPER event.

Weight comparison (exact, integers): the cells disagree with the book when
``10000·|measured − book| > 10000·tolerance.grams + tolerance.basis_points·|book|``; grams must
stay below ~9·10^14 (900 000 t) per bay for the 64-bit batch path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from anchor.errors import ConfigError
from pledgewatch.events import Event, Kind

DAY_MS = 86_400_000
OrderKey = tuple[int, int, str, str, int, str]
STOCK_KINDS = frozenset({Kind.LOAD, Kind.UNLOAD, Kind.COUNT})
RANK: Mapping[Kind, int] = {Kind.LOAD: 0, Kind.UNLOAD: 0, Kind.COUNT: 1, Kind.WEIGHT: 2}
OTHER_RANK = 3


def order_key(event: Event, event_id: str) -> OrderKey:
    rank = RANK.get(event.kind, OTHER_RANK)
    return (event.ts_ms, rank, event.gateway, event.device, event.seq, event_id)


@dataclass(frozen=True, slots=True)
class WeightTolerance:
    """Load cells agree with the book within ``grams`` + ``basis_points``/10000 of the book."""

    grams: int = 5_000
    basis_points: int = 50  # 0.5 %

    def exceeded(self, measured: int, book: int) -> bool:
        return 10_000 * abs(measured - book) > 10_000 * self.grams + self.basis_points * abs(book)


@dataclass(frozen=True, slots=True)
class StateConfig:
    """What both snapshot builders need besides the events.

    ``unit_grams``: grams per unit of each SKU (a bay holding an SKU missing here is listed in
    ``BayWeight.unknown_skus`` and its comparison counts that SKU as 0 g).
    ``watch_lots``: keep only the UNLOADs of these lots (the book's pledged lots), which bounds
    memory in the continuous mode; ``None`` keeps every UNLOAD.
    """

    unit_grams: Mapping[str, int] = field(default_factory=dict)
    tolerance: WeightTolerance = WeightTolerance()
    weight_window_ms: int = 7 * DAY_MS
    watch_lots: frozenset[str] | None = None

    def __post_init__(self) -> None:
        problems = [
            f"unit_grams[{sku!r}]: got {grams!r}, want an integer > 0"
            for sku, grams in self.unit_grams.items()
            if not isinstance(grams, int) or isinstance(grams, bool) or grams <= 0
        ]
        if self.tolerance.grams < 0:
            problems.append(f"tolerance.grams: got {self.tolerance.grams}, want >= 0")
        if not 0 <= self.tolerance.basis_points <= 10_000:
            problems.append(
                f"tolerance.basis_points: got {self.tolerance.basis_points}, want 0..10000"
            )
        if self.weight_window_ms <= 0:
            problems.append(f"weight_window_ms: got {self.weight_window_ms}, want > 0")
        if problems:
            raise ConfigError("reconcile state", problems)

    def watches(self, lot: str) -> bool:
        return self.watch_lots is None or lot in self.watch_lots


@dataclass(frozen=True, slots=True)
class StockLine:
    """Book stock of one lot of one SKU in one bay, and the events that set it."""

    warehouse: str
    bay: str
    lot: str
    sku: str
    qty: int
    count_id: str | None  # the latest COUNT (stocktake); None: never counted
    count_ms: int | None
    count_qty: int | None
    moves: tuple[str, ...]  # LOAD/UNLOAD event ids after that COUNT, in order
    last_ms: int  # ts_ms of the latest of these events

    @property
    def evidence(self) -> tuple[str, ...]:
        return self.moves if self.count_id is None else (self.count_id, *self.moves)


@dataclass(frozen=True, slots=True)
class Unload:
    event_id: str
    warehouse: str
    bay: str
    lot: str
    sku: str
    qty: int
    ts_ms: int
    release: str | None


@dataclass(frozen=True, slots=True)
class BayWeight:
    """The latest weighing of a bay in its window, and the run of disagreement ending at it."""

    warehouse: str
    bay: str
    device: str  # of the latest weighing
    latest_id: str
    latest_ms: int
    grams: int  # measured
    book_grams: int  # book stock × unit grams at the latest weighing
    disagree_since_ms: int | None  # first weighing of the current run; None: latest agrees
    first_disagree_id: str | None
    unknown_skus: tuple[str, ...]  # SKUs ever stocked in the bay with no unit weight


@dataclass(frozen=True, slots=True)
class DeviceSeen:
    warehouse: str
    gateway: str
    device: str
    first_ms: int  # earliest ts_ms of any of its events
    last_heartbeat_ms: int | None  # ts_ms of its highest-seq HEARTBEAT
    last_heartbeat_id: str | None


@dataclass(frozen=True, slots=True)
class GatewaySeen:
    warehouse: str
    gateway: str
    devices: tuple[str, ...]
    last_heartbeat_ms: int | None  # the latest over its devices


@dataclass(frozen=True, slots=True)
class TamperSignal:
    event_id: str
    warehouse: str
    gateway: str
    device: str
    ts_ms: int
    bay: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Sorted tuples: stock by (warehouse, bay, lot, sku), weights by (warehouse, bay), devices
    by (warehouse, gateway, device); unloads and tampers in event order."""

    stock: tuple[StockLine, ...]
    unloads: tuple[Unload, ...]
    weights: tuple[BayWeight, ...]
    devices: tuple[DeviceSeen, ...]
    tampers: tuple[TamperSignal, ...]

    def warehouses(self) -> tuple[str, ...]:
        names = {x.warehouse for x in self.stock} | {x.warehouse for x in self.weights}
        names |= {x.warehouse for x in self.devices} | {x.warehouse for x in self.unloads}
        return tuple(sorted(names))

    def gateways(self) -> tuple[GatewaySeen, ...]:
        grouped: dict[tuple[str, str], list[DeviceSeen]] = {}
        for d in self.devices:
            grouped.setdefault((d.warehouse, d.gateway), []).append(d)
        out = []
        for (warehouse, gateway), devices in sorted(grouped.items()):
            beats = [d.last_heartbeat_ms for d in devices if d.last_heartbeat_ms is not None]
            last = max(beats) if beats else None
            out.append(GatewaySeen(warehouse, gateway, tuple(d.device for d in devices), last))
        return tuple(out)
