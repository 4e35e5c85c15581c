"""Continuous mode: the warehouse state, updated by one verified event at a time.

``IncrementalState.apply(event, event_id)`` takes each stored event once (the ingest's
``BatchResult.stored``; the store's primary key keeps duplicates out — a repeated event would
be counted twice). ``snapshot()`` returns the same ``Snapshot`` that
``batch.snapshot_from_frame`` computes from the same events, **whatever order they were applied
in** — events may arrive late (a gateway back online, a reordered message) or out of
timestamp order, and the state is a function of the set of events, never of arrival order:

- every ordered quantity is placed by ``order_key`` (``ts_ms`` first, see ``snapshot``): a
  late LOAD is inserted before the stocktake that followed it, a late COUNT older than the
  line's current one changes nothing, a late heartbeat with a lower ``seq`` is not "latest";
- the common case (events arriving in order) costs O(1) amortised per event; an event older
  than the bay's newest weighing marks the bay for a re-sweep of its window's weighings
  against the book (done lazily, at the next ``snapshot``).

Memory is bounded by the weight window: per stock line, the events since its last COUNT at or
before the window start (older ones can never matter again); per bay, the window's weighings;
plus the watched UNLOADs and the TAMPER events (both rare) and one record per device.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from anchor.reconcile.snapshot import (
    STOCK_KINDS,
    BayWeight,
    DeviceSeen,
    OrderKey,
    Snapshot,
    StateConfig,
    StockLine,
    TamperSignal,
    Unload,
    order_key,
)
from pledgewatch.events import Event, Kind

__all__ = ["IncrementalState", "Snapshot", "StateConfig"]


@dataclass(frozen=True, slots=True)
class _Entry:
    key: OrderKey
    kind: Kind
    qty: int
    event_id: str

    def after(self, stock: int) -> int:
        if self.kind is Kind.COUNT:
            return self.qty
        return stock + self.qty if self.kind is Kind.LOAD else stock - self.qty


def _entry_key(e: _Entry) -> OrderKey:
    return e.key


class _Line:
    """One (bay, lot, sku): its stock events in order, from a base COUNT once pruned."""

    __slots__ = ("based", "cached", "entries", "stock")

    def __init__(self) -> None:
        self.entries: list[_Entry] = []
        self.stock = 0
        self.based = False  # entries[0] is a COUNT with everything before it dropped
        self.cached: StockLine | None = None  # to_line's answer until the entries change

    def insert(self, entry: _Entry) -> bool:
        """Place ``entry``; False when it is older than the base COUNT (it can never matter)."""
        entries = self.entries
        if self.based and entry.key < entries[0].key:
            return False
        self.cached = None
        if not entries or entry.key > entries[-1].key:
            entries.append(entry)
            self.stock = entry.after(self.stock)
            return True
        bisect.insort(entries, entry, key=_entry_key)
        self.stock = _replay(entries)
        return True

    def prune(self, point_ms: int) -> None:
        """Drop what precedes the last COUNT at or before ``point_ms``."""
        last = None
        for i, e in enumerate(self.entries):
            if e.key[0] > point_ms:
                break
            if e.kind is Kind.COUNT:
                last = i
        if last is not None:
            del self.entries[:last]  # the StockLine stays the same: it starts at the last COUNT
            self.based = True

    def to_line(self, warehouse: str, bay: str, lot: str, sku: str) -> StockLine:
        if self.cached is None:
            self.cached = self._line(warehouse, bay, lot, sku)
        return self.cached

    def _line(self, warehouse: str, bay: str, lot: str, sku: str) -> StockLine:
        entries = self.entries
        count = next(
            (i for i in range(len(entries) - 1, -1, -1) if entries[i].kind is Kind.COUNT), -1
        )
        base = entries[count] if count >= 0 else None
        return StockLine(
            warehouse=warehouse,
            bay=bay,
            lot=lot,
            sku=sku,
            qty=self.stock,
            count_id=None if base is None else base.event_id,
            count_ms=None if base is None else base.key[0],
            count_qty=None if base is None else base.qty,
            moves=tuple(e.event_id for e in entries[count + 1 :]),
            last_ms=entries[-1].key[0],
        )


def _replay(entries: list[_Entry]) -> int:
    stock = 0
    for e in entries:
        stock = e.after(stock)
    return stock


@dataclass(slots=True)
class _Weighing:
    key: OrderKey
    device: str
    grams: int
    book: int = 0
    disagree: bool = False


def _weighing_key(w: _Weighing) -> OrderKey:
    return w.key


class _Bay:
    __slots__ = (
        "book",
        "dirty",
        "lines",
        "max_stock_key",
        "newest_ms",
        "pruned_to",
        "unknown",
        "weighings",
    )

    def __init__(self) -> None:
        self.lines: dict[tuple[str, str], _Line] = {}
        self.weighings: list[_Weighing] = []
        self.newest_ms: int | None = None
        self.max_stock_key: OrderKey | None = None
        self.book = 0  # current book grams
        self.dirty = False  # weighings' book values need a re-sweep
        self.pruned_to: int | None = None
        self.unknown: set[str] = set()

    def seen(self, ts_ms: int) -> None:
        if self.newest_ms is None or ts_ms > self.newest_ms:
            self.newest_ms = ts_ms


@dataclass(slots=True)
class _Device:
    first_ms: int
    beat: tuple[int, str] | None = None  # (seq, event_id) of the latest heartbeat
    beat_ms: int | None = None


class IncrementalState:
    """The continuous-mode state. Constructing it does no I/O; feed it with ``apply``."""

    def __init__(self, config: StateConfig) -> None:
        self.config = config
        self._bays: dict[tuple[str, str], _Bay] = {}
        self._unloads: list[tuple[OrderKey, Unload]] = []
        self._tampers: list[tuple[OrderKey, TamperSignal]] = []
        self._devices: dict[tuple[str, str, str], _Device] = {}
        self._prune_step = max(config.weight_window_ms // 16, 1)

    def apply(self, event: Event, event_id: str) -> None:
        """Fold one verified event into the state (any arrival order; each event once)."""
        key = order_key(event, event_id)
        self._device(event, event_id)
        if event.kind in STOCK_KINDS:
            self._stock(event, event_id, key)
        elif event.kind is Kind.WEIGHT:
            self._weight(event, key)
        elif event.kind is Kind.TAMPER:
            signal = TamperSignal(
                event_id,
                event.warehouse,
                event.gateway,
                event.device,
                event.ts_ms,
                event.bay,
                event.reason or "",
            )
            bisect.insort(self._tampers, (key, signal), key=_first)

    def _device(self, event: Event, event_id: str) -> None:
        ident = (event.warehouse, event.gateway, event.device)
        device = self._devices.get(ident)
        if device is None:
            device = self._devices[ident] = _Device(event.ts_ms)
        device.first_ms = min(device.first_ms, event.ts_ms)
        if event.kind is Kind.HEARTBEAT and (
            device.beat is None or (event.seq, event_id) > device.beat
        ):
            device.beat, device.beat_ms = (event.seq, event_id), event.ts_ms

    def _stock(self, event: Event, event_id: str, key: OrderKey) -> None:
        assert event.bay is not None and event.lot is not None and event.sku is not None
        assert event.qty is not None  # LOAD/UNLOAD/COUNT require them (events.py)
        bay = self._bay(event.warehouse, event.bay)
        bay.seen(event.ts_ms)
        units = self.config.unit_grams
        if event.sku not in units:
            bay.unknown.add(event.sku)
        if event.kind is Kind.UNLOAD and self.config.watches(event.lot):
            unload = Unload(
                event_id,
                event.warehouse,
                event.bay,
                event.lot,
                event.sku,
                event.qty,
                event.ts_ms,
                event.release,
            )
            bisect.insort(self._unloads, (key, unload), key=_first)
        line = bay.lines.get((event.lot, event.sku))
        if line is None:
            line = bay.lines[(event.lot, event.sku)] = _Line()
        before = line.stock
        if not line.insert(_Entry(key, event.kind, event.qty, event_id)):
            return
        bay.book += (line.stock - before) * units.get(event.sku, 0)
        if bay.max_stock_key is None or key > bay.max_stock_key:
            bay.max_stock_key = key
            self._maybe_prune(bay)
        if bay.weighings and key < bay.weighings[-1].key:
            bay.dirty = True

    def _weight(self, event: Event, key: OrderKey) -> None:
        assert event.bay is not None and event.grams is not None  # WEIGHT requires them
        bay = self._bay(event.warehouse, event.bay)
        bay.seen(event.ts_ms)
        w = _Weighing(key, event.device, event.grams)
        in_order = (not bay.weighings or key > bay.weighings[-1].key) and (
            bay.max_stock_key is None or key > bay.max_stock_key
        )
        if in_order:  # the current book is the book at this weighing
            w.book = bay.book
            w.disagree = self.config.tolerance.exceeded(w.grams, w.book)
            bay.weighings.append(w)
            self._maybe_prune(bay)
        else:
            bisect.insort(bay.weighings, w, key=_weighing_key)
            bay.dirty = True

    def _bay(self, warehouse: str, name: str) -> _Bay:
        bay = self._bays.get((warehouse, name))
        if bay is None:
            bay = self._bays[(warehouse, name)] = _Bay()
        return bay

    def _window_start(self, bay: _Bay) -> int:
        assert bay.newest_ms is not None
        return bay.newest_ms - self.config.weight_window_ms

    def _maybe_prune(self, bay: _Bay) -> None:
        start = self._window_start(bay)
        if bay.pruned_to is None or start - bay.pruned_to >= self._prune_step:
            self._prune(bay, start)

    def _prune(self, bay: _Bay, start: int) -> None:
        cut = bisect.bisect_left(bay.weighings, start, key=lambda w: w.key[0])
        del bay.weighings[:cut]
        for line in bay.lines.values():
            line.prune(start)
        bay.pruned_to = start

    def _resweep(self, bay: _Bay) -> None:
        """Recompute every window weighing's book value from the lines' retained events."""
        self._prune(bay, self._window_start(bay))
        units = self.config.unit_grams
        steps: list[tuple[OrderKey, int]] = []
        for (_, sku), line in bay.lines.items():
            unit, stock = units.get(sku, 0), 0
            for e in line.entries:
                new = e.after(stock)
                steps.append((e.key, (new - stock) * unit))
                stock = new
        steps.sort()
        book, i = 0, 0
        for w in bay.weighings:
            while i < len(steps) and steps[i][0] < w.key:
                book += steps[i][1]
                i += 1
            w.book = book
            w.disagree = self.config.tolerance.exceeded(w.grams, book)
        bay.dirty = False

    def snapshot(self) -> Snapshot:
        """The state now; brings lazily-marked bays up to date first (no other change)."""
        stock: list[StockLine] = []
        weights: list[BayWeight] = []
        for (warehouse, name), bay in sorted(self._bays.items()):
            if bay.dirty:
                self._resweep(bay)
            for (lot, sku), line in sorted(bay.lines.items()):
                stock.append(line.to_line(warehouse, name, lot, sku))
            weight = self._bay_weight(warehouse, name, bay)
            if weight is not None:
                weights.append(weight)
        devices = tuple(
            DeviceSeen(
                w, g, d, rec.first_ms, rec.beat_ms, None if rec.beat is None else rec.beat[1]
            )
            for (w, g, d), rec in sorted(self._devices.items())
        )
        return Snapshot(
            stock=tuple(stock),
            unloads=tuple(u for _, u in self._unloads),
            weights=tuple(weights),
            devices=devices,
            tampers=tuple(t for _, t in self._tampers),
        )

    def _bay_weight(self, warehouse: str, name: str, bay: _Bay) -> BayWeight | None:
        if bay.newest_ms is None:
            return None
        start = self._window_start(bay)
        window = bay.weighings[bisect.bisect_left(bay.weighings, start, key=lambda w: w.key[0]) :]
        if not window:
            return None
        first = len(window)
        while first > 0 and window[first - 1].disagree:
            first -= 1
        latest = window[-1]
        run = window[first] if first < len(window) else None
        return BayWeight(
            warehouse=warehouse,
            bay=name,
            device=latest.device,
            latest_id=latest.key[5],
            latest_ms=latest.key[0],
            grams=latest.grams,
            book_grams=latest.book,
            disagree_since_ms=None if run is None else run.key[0],
            first_disagree_id=None if run is None else run.key[5],
            unknown_skus=tuple(sorted(bay.unknown)),
        )


def _first(item: tuple[OrderKey, object]) -> OrderKey:
    return item[0]
