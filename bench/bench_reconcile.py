"""Benchmark the batch reconciler against DuckDB doing the same stock aggregation; never fails
on a timing.

    .venv/bin/python bench/bench_reconcile.py [--quick] [--sizes 1000000,3000000,10000000]
                                              [--repeats 3] [--sample 100000] [--json PATH]

**The data** (made here, seeded, no disk): one synthetic world of 200 warehouses, each with one
gateway, 20 bays (``a01`` … ``b10``), 25 devices (``portal-in``/``portal-out``/``stocktake``
for movements and stocktakes, ``cell-<bay>`` load cells, ``door-1``/``door-2``), 40 SKUs (two
of them without a unit weight), 30,000 lots in 1–2 bays each (about 39,000 stock lines): 10,000
lots pledged to 2,000 static loans (5 lots each) plus one dynamic loan per warehouse, with a
weekly price per SKU. Events arrive at 2/s on average over the whole world (so 10 M events are
about 58 days of history), kinds LOAD 18 %, UNLOAD 16 %, COUNT 3 %, WEIGHT 50 %, HEARTBEAT 12 %,
DOOR 1 %, plus 10 TAMPER events. Movements go mostly to unpledged lots (a pledged line gets 1/20
of the traffic); every UNLOAD of a pledged lot cites a release token the bank issued, except 1
in 200. COUNTs land near each line's level, loads and unloads move 1–20 units, ``seq`` runs per
device in time order, and the rows are in arrival order (``ts_ms`` + a few hundred ms; 1 in 200
events up to 6 h late). Load cells read noise around a level, so most bays disagree with the
book: a worst case for the weight path. No FORK and no repeated row (the store's primary key
keeps repeats out; forks are rare), so neither path takes its tie-break branch.

The frame has the columns ``anchor.reconcile.batch.events_frame`` makes, text as pandas' Arrow
strings (pandas 3's default ``str`` dtype), ``qty``/``grams`` as ``Int64``. DuckDB reads the
same columns as an Arrow table made outside the clock (text shared zero-copy, ``Int64``
converted). Nothing touches disk.

**Per size** (``repeats`` times, interleaved; medians):

* **DuckDB stock aggregation** (the peer, its default threads = the machine's cores): book stock
  per (warehouse, bay, lot, sku) with batch.py's semantics — rows with ``ts_ms <= at``, one row
  per ``event_id``, the latest COUNT by ``order_key`` (a struct of ts_ms, rank, gateway, device,
  seq, event_id) sets the stock, LOADs after it add and UNLOADs subtract. Also at 1 thread, as
  information.
* **ours, stock part**: the same stock per line through ``snapshot_from_frame``'s own first
  steps (``batch._prepare`` and ``batch._stock_algebra``, then the last row per line), no
  Python objects per line — the like-for-like figure.
* **ours, snapshot**: ``snapshot_from_frame`` (stock lines with evidence, unloads of pledged
  lots, bay weights, devices, tampers) — and ``rules.evaluate`` of it against the loan book and
  the tokens, separately; **full reconcile** = the two.

Each is printed ÷ the DuckDB time of the same size. The stock of every line is checked equal
across DuckDB, our stock part and the snapshot; a mismatch raises. Peak RSS per step is
``VmHWM`` after resetting it (``/proc/self/clear_refs``), i.e. the process's peak while the
step ran, the frame included.

**Incremental** (one sample: the first ``sample`` rows of the smallest size, arrival order):
``IncrementalState.apply`` events/s beside the bare ``SignedEvent.from_wire`` decode rate of the
same events' wire bytes (the signature bytes are a placeholder: ``from_wire`` checks shape
only); the sample's incremental snapshot is checked equal to the batch one.

Targets (issue "Loans, the reconciler and alerts", §5): at the largest size, batch reconcile
<= 1.5 x DuckDB's stock aggregation; judged both for the full reconcile (the issue's wording)
and for the stock part (like for like). ``run(quick)`` returns a JSON-able dict with ``rows``
for bench/run.py.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
from report import write_json

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from anchor.loanbook import Loan, LoanBook, Pledge, PledgeType, Price  # noqa: E402
from anchor.reconcile import batch  # noqa: E402
from anchor.reconcile.rules import RuleSettings, evaluate  # noqa: E402
from anchor.reconcile.snapshot import Snapshot, StateConfig  # noqa: E402
from anchor.reconcile.state import IncrementalState  # noqa: E402
from pledgewatch.events import ZERO_HASH, DoorState, Event, Kind, SignedEvent  # noqa: E402
from pledgewatch.release import ReleaseToken  # noqa: E402

FULL_SIZES = (1_000_000, 3_000_000, 10_000_000)
QUICK_SIZES = (100_000, 300_000)
FULL_SAMPLE, QUICK_SAMPLE = 100_000, 20_000
TARGET_RATIO = 1.5
SEED = 20250101

T0_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z
SPACING_MS = 500  # the whole world emits 2 events/s on average
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WAREHOUSES = 200
BAYS = tuple(f"{row}{i:02d}" for row in "ab" for i in range(1, 11))
DEVICES = ("portal-in", "portal-out", "stocktake", "door-1", "door-2", *(f"cell-{b}" for b in BAYS))
CELL0 = 5  # DEVICES[CELL0 + bay] is the bay's load cell
DOCKS = ("dock-1", "dock-2")
COMMODITIES = ("steel-hrc", "steel-crc", "rebar", "wire-rod", "copper-cathode", "alu-ingot",
               "zinc-ingot", "nickel-plate", "soybean", "corn", "wheat", "rice", "sugar",
               "cotton", "rubber", "palm-oil", "pulp", "coal", "iron-ore", "urea")  # fmt: skip
SKUS = tuple(f"{c}-{grade}" for c in COMMODITIES for grade in ("a", "b"))
UNWEIGHED_SKUS = 2  # the last two SKUs have no unit weight
PLEDGED_PER_WAREHOUSE = 50
FREE_PER_WAREHOUSE = 100
LOTS_PER_LOAN = 5
KINDS = (("LOAD", 0.18), ("UNLOAD", 0.16), ("COUNT", 0.03), ("WEIGHT", 0.50),
         ("HEARTBEAT", 0.12), ("DOOR", 0.01))  # fmt: skip
TAMPERS = 10
PLEDGED_TRAFFIC = 0.05  # a pledged line's share of movements, relative to a free line
UNTOKENED = 0.005  # UNLOADs of pledged lots without a release token
LATE = 0.005  # events delivered up to LATE_MS late
LATE_MS = 6 * HOUR_MS
TEXT = ("warehouse", "gateway", "device", "kind", "bay", "sku", "lot", "release", "door", "reason")
LINE = ["warehouse", "bay", "lot", "sku"]

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """The fixed part: warehouses, stock lines, loans. Lines are (warehouse, bay, lot, sku)."""

    line_wh: npt.NDArray[np.int64]
    line_bay: npt.NDArray[np.int64]
    line_lot: npt.NDArray[np.int64]
    line_sku: npt.NDArray[np.int64]
    line_level: npt.NDArray[np.int64]
    line_pledged: npt.NDArray[np.bool_]
    lots: tuple[str, ...]
    lot_loan: dict[int, str]  # pledged lot index -> loan id
    bay_level: npt.NDArray[np.int64]  # grams the cells of (warehouse * 20 + bay) read around
    unit_grams: dict[str, int]
    book: LoanBook

    @property
    def pledged_lots(self) -> frozenset[str]:
        return frozenset(self.lots[i] for i in self.lot_loan)


@dataclass
class Data:
    frame: pd.DataFrame
    arrow: pa.Table
    at_ms: int
    tokens: list[ReleaseToken]


def make_world(seed: int = SEED) -> World:
    rng = np.random.default_rng(seed)
    per_wh = PLEDGED_PER_WAREHOUSE + FREE_PER_WAREHOUSE
    lots, lot_wh, lot_sku = [], [], []
    for w in range(WAREHOUSES):
        for k in range(per_wh):
            lots.append(f"wr-{w:03d}-{k:04d}")
            lot_wh.append(w)
            lot_sku.append(int(rng.integers(len(SKUS))))
    line_wh, line_bay, line_lot = [], [], []
    for i, w in enumerate(lot_wh):
        bays = rng.choice(len(BAYS), size=1 if rng.random() < 0.7 else 2, replace=False)
        for b in bays:
            line_wh.append(w)
            line_bay.append(int(b))
            line_lot.append(i)
    lot_arr = np.array(line_lot)
    pledged = (lot_arr % per_wh) < PLEDGED_PER_WAREHOUSE
    level = rng.integers(50, 500, len(lot_arr))
    unit_grams = {sku: int(rng.integers(20, 2000)) * 1000 for sku in SKUS[:-UNWEIGHED_SKUS]}
    book, lot_loan = make_book(rng, lots, lot_arr, pledged, level, np.array(lot_sku))
    return World(
        line_wh=np.array(line_wh),
        line_bay=np.array(line_bay),
        line_lot=lot_arr,
        line_sku=np.array(lot_sku)[lot_arr],
        line_level=level,
        line_pledged=pledged,
        lots=tuple(lots),
        lot_loan=lot_loan,
        bay_level=rng.integers(1_000_000, 50_000_000, WAREHOUSES * len(BAYS)),
        unit_grams=unit_grams,
        book=book,
    )


def make_book(
    rng: np.random.Generator,
    lots: list[str],
    line_lot: npt.NDArray[np.int64],
    pledged: npt.NDArray[np.bool_],
    level: npt.NDArray[np.int64],
    lot_sku: npt.NDArray[np.int64],
) -> tuple[LoanBook, dict[int, str]]:
    """2,000 static loans of 5 lots (pledged at 90 % of their level), one dynamic loan per
    warehouse, weekly prices; every loan in force over the whole history."""
    per_wh = PLEDGED_PER_WAREHOUSE + FREE_PER_WAREHOUSE
    lot_level = np.bincount(line_lot, weights=level, minlength=len(lots))
    start = dt.date(2025, 1, 1)
    prices = []
    for sku in SKUS:  # a random walk, ±3 % a week
        walk = rng.integers(500, 50_000) * np.cumprod(1 + rng.uniform(-0.03, 0.03, 60))
        prices += [
            Price(sku, start + dt.timedelta(weeks=week), Decimal(int(p)))
            for week, p in enumerate(walk)
        ]
    first_price = {p.sku: p.unit_price for p in prices if p.date == start}
    loans, pledges, lot_loan = [], [], {}
    for w in range(WAREHOUSES):
        for j in range(PLEDGED_PER_WAREHOUSE // LOTS_PER_LOAN):
            loan_id = f"L-{w:03d}-{j:02d}"
            value = Decimal(0)
            for k in range(j * LOTS_PER_LOAN, (j + 1) * LOTS_PER_LOAN):
                lot = w * per_wh + k
                qty = int(lot_level[lot] * 0.9)
                sku = SKUS[lot_sku[lot]]
                pledges.append(Pledge(loan_id, lots[lot], sku, qty))
                lot_loan[lot] = loan_id
                value += first_price[sku] * qty
            loans.append(
                _loan(loan_id, w, PledgeType.STATIC, (value / Decimal("1.5")).quantize(Decimal(1)))
            )
        dynamic = f"L-{w:03d}-dyn"
        loans.append(_loan(dynamic, w, PledgeType.DYNAMIC, Decimal(1_000_000)))
        for sku in rng.choice(len(SKUS), size=2, replace=False):
            pledges.append(Pledge(dynamic, None, SKUS[sku], 0))
    assert pledged.sum() >= len(lot_loan)
    return LoanBook(tuple(loans), tuple(pledges), tuple(prices)), lot_loan


def _loan(loan_id: str, w: int, kind: PledgeType, outstanding: Decimal) -> Loan:
    return Loan(
        loan_id=loan_id,
        borrower=f"borrower {loan_id}",
        warehouse=f"wh-{w:03d}",
        currency="CNY",
        outstanding=outstanding,
        start=dt.date(2025, 1, 1),
        end=dt.date(2026, 3, 31),
        pledge_type=kind,
        advance_rate=Decimal("0.7"),
        warning_ratio=Decimal("1.3"),
        liquidation_ratio=Decimal("1.1"),
        min_value=Decimal(0),
    )


def make_data(world: World, n: int, seed: int = SEED) -> Data:
    """``n`` events of the world (see the module docstring), in arrival order."""
    rng = np.random.default_rng(seed + n)
    names = [k for k, _ in KINDS]
    kind = rng.choice(len(KINDS), size=n, p=[p for _, p in KINDS])
    opening = min(len(world.line_wh), n // 2)  # the onboarding stocktake: one COUNT per line
    kind[:opening] = names.index("COUNT")
    kind[rng.choice(np.flatnonzero(kind == names.index("HEARTBEAT")), TAMPERS, replace=False)] = (
        len(KINDS)  # TAMPER
    )
    names.append("TAMPER")
    span = n * SPACING_MS
    ts = T0_MS + np.sort(rng.integers(0, span, n))
    wh = rng.integers(0, WAREHOUSES, n)
    dev = rng.integers(0, len(DEVICES), n)
    bay = np.full(n, -1)
    sku = np.full(n, -1)
    lot = np.full(n, -1)
    qty = np.zeros(n, dtype=np.int64)
    has_qty = np.zeros(n, dtype=bool)
    grams = np.zeros(n, dtype=np.int64)
    has_grams = np.zeros(n, dtype=bool)
    release = np.full(n, -1)
    door = np.full(n, -1)
    reason = np.full(n, -1)

    load, unload, count = (kind == names.index(k) for k in ("LOAD", "UNLOAD", "COUNT"))
    move = load | unload
    weights = np.where(world.line_pledged, PLEDGED_TRAFFIC, 1.0)
    line = np.zeros(n, dtype=np.int64)
    line[move] = rng.choice(len(weights), size=int(move.sum()), p=weights / weights.sum())
    line[count] = rng.integers(0, len(weights), int(count.sum()))
    line[:opening] = np.arange(opening)
    stock = move | count
    wh[stock] = world.line_wh[line[stock]]
    bay[stock] = world.line_bay[line[stock]]
    lot[stock] = world.line_lot[line[stock]]
    sku[stock] = world.line_sku[line[stock]]
    dev[load], dev[unload], dev[count] = 0, 1, 2
    qty[move] = rng.integers(1, 21, int(move.sum()))
    level = world.line_level[line[count]]
    qty[count] = np.maximum(level + rng.integers(-10, 11, len(level)), 0)
    has_qty[stock] = True

    weight = kind == names.index("WEIGHT")
    bay[weight] = rng.integers(0, len(BAYS), int(weight.sum()))
    dev[weight] = CELL0 + bay[weight]
    cells = world.bay_level[wh[weight] * len(BAYS) + bay[weight]]
    grams[weight] = cells + rng.integers(-20_000, 20_001, len(cells))
    has_grams[weight] = True

    is_door = kind == names.index("DOOR")
    dev[is_door] = rng.integers(3, 5, int(is_door.sum()))
    door[is_door] = rng.integers(0, 2, int(is_door.sum()))
    bay[is_door] = len(BAYS) + dev[is_door] - 3  # dock-1 / dock-2
    tamper = kind == len(KINDS)
    reason[tamper] = 0

    pledged_unload = unload & world.line_pledged[line]
    tokened = pledged_unload & (rng.random(n) >= UNTOKENED)
    release[tokened] = np.arange(int(tokened.sum()))

    device = wh * len(DEVICES) + dev  # one gateway per warehouse: the device's chain
    seq = _seq(device)
    arrival = ts + rng.exponential(300, n).astype(np.int64)
    late = rng.random(n) < LATE
    arrival[late] += rng.integers(0, LATE_MS, int(late.sum()))
    order = np.argsort(arrival, kind="stable")

    pools = {
        "warehouse": [f"wh-{w:03d}" for w in range(WAREHOUSES)],
        "gateway": [f"gw-{w:03d}" for w in range(WAREHOUSES)],
        "device": list(DEVICES),
        "kind": names,
        "bay": [*BAYS, *DOCKS],
        "sku": list(SKUS),
        "lot": list(world.lots),
        "release": None,
        "door": [DoorState.OPEN.value, DoorState.CLOSED.value],
        "reason": ["housing opened"],
    }
    codes = {"warehouse": wh, "gateway": wh, "device": dev, "kind": kind, "bay": bay, "sku": sku,
             "lot": lot, "release": release, "door": door, "reason": reason}  # fmt: skip
    cols: dict[str, Any] = {"event_id": _hex_ids(rng, n)}
    for name in TEXT:
        pool = pools[name]
        c = codes[name][order]
        cols[name] = _release_ids(c) if pool is None else _text(pa.array(pool, pa.string()), c)
    cols["seq"] = seq[order]
    cols["ts_ms"] = ts[order]
    cols["qty"] = pd.arrays.IntegerArray(qty[order], ~has_qty[order])
    cols["grams"] = pd.arrays.IntegerArray(grams[order], ~has_grams[order])
    frame = pd.DataFrame({name: cols[name] for name in batch.COLUMNS})
    at_ms = int(ts.max())
    tokens = _tokens(world, frame)
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    return Data(frame, arrow, at_ms, tokens)


def _seq(device: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """1, 2, … per device in row (= time) order."""
    order = np.argsort(device, kind="stable")
    d = device[order]
    starts = np.r_[0, np.flatnonzero(d[1:] != d[:-1]) + 1]
    runs = np.diff(np.r_[starts, len(d)])
    within = np.arange(len(d)) - np.repeat(starts, runs)
    seq = np.empty(len(d), dtype=np.int64)
    seq[order] = within + 1
    return seq


def _hex_ids(rng: np.random.Generator, n: int) -> pd.Series:
    data = rng.bytes(32 * n).hex().encode()
    offsets = np.arange(0, 64 * n + 1, 64, dtype=np.int64)
    ids = pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    return pd.Series(pd.array(ids.cast(pa.string()), dtype="str"))


def _text(pool: pa.Array, codes: npt.NDArray[np.int64]) -> pd.Series:
    index = pa.array(codes.astype(np.int32), mask=codes < 0)
    decoded = pa.DictionaryArray.from_arrays(index, pool).cast(pa.string())
    return pd.Series(pd.array(decoded, dtype="str"))


def _release_ids(codes: npt.NDArray[np.int64]) -> pd.Series:
    text = np.array([f"rel-{c:07d}" if c >= 0 else None for c in codes.tolist()], dtype=object)
    return pd.Series(pd.array(text, dtype="str"))


def _tokens(world: World, frame: pd.DataFrame) -> list[ReleaseToken]:
    """One token per cited release: for the unload's lot and qty, issued an hour before it,
    valid for a week."""
    cited = frame[frame["release"].notna()]
    lot_index = {name: i for i, name in enumerate(world.lots)}
    return [
        ReleaseToken(rid, wh, world.lot_loan[lot_index[lot]], lot, int(q), ts - HOUR_MS,
                     ts + 7 * DAY_MS)
        for rid, wh, lot, q, ts in zip(
            cited["release"].tolist(), cited["warehouse"].tolist(), cited["lot"].tolist(),
            cited["qty"].tolist(), cited["ts_ms"].tolist(), strict=True)
    ]  # fmt: skip


def state_config(world: World) -> StateConfig:
    return StateConfig(unit_grams=world.unit_grams, watch_lots=world.pledged_lots)


RULES = RuleSettings(silent_after_ms=DAY_MS, silent_major_after_ms=3 * DAY_MS)

# The stock aggregation, batch.py's semantics: order_key as a struct, the latest COUNT per line
# (arg_max over it) sets the stock, movements ordered after it add or subtract.
DUCKDB_STOCK = """
WITH s AS (
    SELECT DISTINCT ON (event_id) warehouse, bay, lot, sku, kind, qty,
           {'ts': ts_ms, 'rank': CASE kind WHEN 'COUNT' THEN 1 ELSE 0 END, 'gateway': gateway,
            'device': device, 'seq': seq, 'id': event_id} AS okey
    FROM events
    WHERE kind IN ('LOAD', 'UNLOAD', 'COUNT') AND ts_ms <= $at
),
c AS (
    SELECT warehouse, bay, lot, sku, max(okey) AS ckey, arg_max(qty, okey) AS cqty
    FROM s WHERE kind = 'COUNT' GROUP BY ALL
)
SELECT s.warehouse, s.bay, s.lot, s.sku,
       coalesce(any_value(c.cqty), 0) + coalesce(sum(
           CASE s.kind WHEN 'LOAD' THEN s.qty WHEN 'UNLOAD' THEN -s.qty ELSE 0 END
       ) FILTER (WHERE c.ckey IS NULL OR s.okey > c.ckey), 0) AS qty
FROM s LEFT JOIN c USING (warehouse, bay, lot, sku)
GROUP BY ALL
"""


def duckdb_stock(con: duckdb.DuckDBPyConnection, at_ms: int) -> dict[tuple[str, ...], int]:
    rows = con.execute(DUCKDB_STOCK, {"at": at_ms}).fetchall()
    return {(w, b, lot, s): int(q) for w, b, lot, s, q in rows}


def ours_stock(frame: pd.DataFrame, at_ms: int, config: StateConfig) -> dict[tuple[str, ...], int]:
    """Book stock per line through snapshot_from_frame's own first steps (rows kept and put in
    order, then the stock algebra), then each line's last row; no evidence, no objects."""
    rows = batch._prepare(frame, at_ms)
    st = batch._stock_algebra(rows, config)
    heads = st.at[st.last]
    names = [rows.text[c].text(rows.text[c].codes[heads]) for c in LINE]
    return dict(zip(zip(*names, strict=True), st.after[st.last].tolist(), strict=True))


def snapshot_stock(snapshot: Snapshot) -> dict[tuple[str, ...], int]:
    return {(s.warehouse, s.bay, s.lot, s.sku): s.qty for s in snapshot.stock}


def reset_peak() -> bool:
    """Reset this process's VmHWM to its current RSS (Linux >= 4.0); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@dataclass
class Step:
    """One measured step over the repeats: wall seconds; RSS in MB just before it and at its
    peak, and the largest peak − before of one repeat (None where /proc does not allow it)."""

    seconds: list[float] = field(default_factory=list)
    before_mb: float | None = None
    peak_mb: float | None = None
    growth_mb: float | None = None

    def run(self, fn: Callable[[], T]) -> T:
        gc.collect()
        reset = reset_peak()
        before = status_mb("VmRSS")
        start = time.perf_counter()
        out = fn()
        self.seconds.append(time.perf_counter() - start)
        peak = status_mb("VmHWM") if reset else None
        if before is not None and peak is not None:
            self.before_mb = max(self.before_mb or 0.0, before)
            self.peak_mb = max(self.peak_mb or 0.0, peak)
            self.growth_mb = max(self.growth_mb or 0.0, peak - before)
        return out

    def figures(self) -> dict[str, Any]:
        return {"median_s": statistics.median(self.seconds), "samples_s": self.seconds,
                "rss_before_mb": self.before_mb, "rss_peak_mb": self.peak_mb,
                "rss_growth_mb": self.growth_mb}  # fmt: skip


STEPS = ("duckdb", "duckdb_1t", "stock", "snapshot", "evaluate")


def run_size(world: World, n: int, repeats: int) -> dict[str, Any]:
    """``repeats`` rounds of every step, interleaved; the stock is checked in the first."""
    t0 = time.perf_counter()
    data = make_data(world, n)
    made_s = time.perf_counter() - t0
    config = state_config(world)
    frame_mb = data.frame.memory_usage(deep=True).sum() / 2**20
    con = duckdb.connect()
    con.register("events", data.arrow)
    threads = int(con.execute("SELECT current_setting('threads')").fetchone()[0])  # type: ignore[index]
    steps = {name: Step() for name in STEPS}
    shape: dict[str, Any] = {}
    for i in range(repeats):
        theirs = steps["duckdb"].run(lambda: duckdb_stock(con, data.at_ms))
        con.execute("SET threads = 1")
        steps["duckdb_1t"].run(lambda: duckdb_stock(con, data.at_ms))
        con.execute(f"SET threads = {threads}")
        ours = steps["stock"].run(lambda: ours_stock(data.frame, data.at_ms, config))
        snap = steps["snapshot"].run(
            lambda: batch.snapshot_from_frame(data.frame, data.at_ms, config)
        )
        found = steps["evaluate"].run(
            functools.partial(evaluate, snap, world.book, data.tokens, (), RULES, data.at_ms)
        )
        if i == 0:
            check_same(theirs, ours, snapshot_stock(snap), n)
            shape = {
                "stock_lines": len(snap.stock),
                "unloads": len(snap.unloads),
                "bay_weights": len(snap.weights),
                "devices": len(snap.devices),
                "tampers": len(snap.tampers),
                "conditions": len(found),
                "conditions_by_rule": _by_rule(found),
            }
    con.close()
    figures = {name: step.figures() for name, step in steps.items()}
    median = {name: f["median_s"] for name, f in figures.items()}
    snapshot, evaluated = steps["snapshot"].seconds, steps["evaluate"].seconds
    median["reconcile"] = statistics.median(a + b for a, b in zip(snapshot, evaluated, strict=True))
    return {
        "events": n,
        "at_ms": data.at_ms,
        "history_days": (data.at_ms - T0_MS) / DAY_MS,
        "tokens": len(data.tokens),
        "make_s": made_s,
        "frame_mb": frame_mb,
        "duckdb_threads": threads,
        "median_s": median,
        "steps": figures,
        "shape": shape,
    }


def _by_rule(found: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in found:
        out[c.rule.value] = out.get(c.rule.value, 0) + 1
    return out


def check_same(
    theirs: dict[tuple[str, ...], int],
    ours: dict[tuple[str, ...], int],
    snap: dict[tuple[str, ...], int],
    n: int,
) -> None:
    if theirs == ours == snap:
        return
    diff = [k for k in theirs.keys() | ours.keys() | snap.keys()
            if not theirs.get(k) == ours.get(k) == snap.get(k)]  # fmt: skip
    sample = [(k, theirs.get(k), ours.get(k), snap.get(k)) for k in sorted(diff)[:5]]
    raise RuntimeError(
        f"stock differs at {n:,} events on {len(diff)} lines (duckdb, ours, snapshot): {sample}"
    )


def incremental(world: World, n: int, sample: int) -> dict[str, Any]:
    """apply and from_wire rates over the first ``sample`` rows of the ``n``-event frame."""
    data = make_data(world, n)
    head = data.frame.iloc[n // 2 : n // 2 + sample].reset_index(drop=True)
    config = state_config(world)
    pairs = list(_events(head))
    sig = bytes(64)
    wires = [SignedEvent.wire_from_body(e.canonical(), "0" * 32, sig) for _, e in pairs]
    gc.collect()
    start = time.perf_counter()
    for w in wires:
        SignedEvent.from_wire(w)
    decode_s = time.perf_counter() - start
    state = IncrementalState(config)
    start = time.perf_counter()
    for event_id, event in pairs:
        state.apply(event, event_id)
    apply_s = time.perf_counter() - start
    start = time.perf_counter()
    snap = state.snapshot()
    snapshot_s = time.perf_counter() - start
    if snap != batch.snapshot_from_frame(head, None, config):
        raise RuntimeError(f"incremental snapshot of {sample:,} events differs from the batch one")
    return {
        "events": len(pairs),
        "from_wire_per_s": len(pairs) / decode_s,
        "apply_per_s": len(pairs) / apply_s,
        "snapshot_s": snapshot_s,
        "wire_bytes_mean": sum(map(len, wires)) / len(wires),
    }


def _events(frame: pd.DataFrame) -> list[tuple[str, Event]]:
    out = []
    columns = [frame[c].tolist() for c in batch.COLUMNS]
    for row in zip(*columns, strict=True):
        values: dict[str, Any] = {
            c: (None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v)
            for c, v in zip(batch.COLUMNS, row, strict=True)
        }
        event_id = values.pop("event_id")
        seq = int(values["seq"])
        out.append(
            (
                event_id,
                Event(
                    kind=Kind(values["kind"]),
                    warehouse=values["warehouse"],
                    gateway=values["gateway"],
                    device=values["device"],
                    seq=seq,
                    prev=ZERO_HASH if seq == 1 else "f" * 64,
                    ts_ms=int(values["ts_ms"]),
                    bay=values["bay"],
                    sku=values["sku"],
                    lot=values["lot"],
                    qty=None if values["qty"] is None else int(values["qty"]),
                    grams=None if values["grams"] is None else int(values["grams"]),
                    release=values["release"],
                    door=None if values["door"] is None else DoorState(values["door"]),
                    reason=values["reason"],
                ),
            )
        )
    return out


def run(
    quick: bool = False,
    sizes: tuple[int, ...] | None = None,
    repeats: int | None = None,
    sample: int | None = None,
) -> dict[str, Any]:
    """Every size, smallest first; then the incremental sample. Returns figures and ``rows``."""
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    repeats = repeats or (1 if quick else 3)
    sample = min(sample or (QUICK_SAMPLE if quick else FULL_SAMPLE), *sizes)
    start = time.perf_counter()
    world = make_world()
    per_size = []
    for n in sorted(sizes):
        print(f"  reconcile: {n:,} events ...", file=sys.stderr, flush=True)
        per_size.append(run_size(world, n, repeats))
        gc.collect()
    print(f"  reconcile: incremental, {sample:,} events ...", file=sys.stderr, flush=True)
    inc = incremental(world, min(sizes), sample)
    result = {
        "benchmark": "reconcile",
        "quick": quick,
        "params": {
            "sizes": sorted(sizes),
            "repeats": repeats,
            "sample": sample,
            "warehouses": WAREHOUSES,
            "stock_lines_in_world": len(world.line_wh),
            "pledged_lots": len(world.lot_loan),
            "loans": len(world.book.loans),
            "pledges": len(world.book.pledges),
            "prices": len(world.book.prices),
        },
        "environment": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "pandas": pd.__version__,
            "numpy": np.__version__,
            "duckdb": duckdb.__version__,
            "pyarrow": pa.__version__,
        },
        "sizes": per_size,
        "incremental": inc,
        "seconds": time.perf_counter() - start,
    }
    result["rows"] = rows(result)
    result["notes"] = notes(result)
    return result


def row(
    figure: str,
    value: float | None,
    unit: str,
    *,
    peer: str | None = None,
    peer_value: float | None = None,
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of the report; ``ratio`` is value ÷ peer_value; ``met`` None: information."""
    ratio = None if value is None or not peer_value else value / peer_value
    return {"figure": figure, "value": value, "unit": unit, "peer": peer,
            "peer_value": peer_value, "ratio": ratio, "target": target, "met": met}  # fmt: skip


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    largest = max(s["events"] for s in result["sizes"])
    for s in result["sizes"]:
        m, n = s["median_s"], s["events"]
        size = _size(n)
        judged = n == largest
        peer = {
            "peer": f"DuckDB stock s ({s['duckdb_threads']} threads)",
            "peer_value": m["duckdb"],
        }
        target = f"<= {TARGET_RATIO:g}x DuckDB" if judged else None

        def verdict(value: float, judged: bool = judged, duck: float = m["duckdb"]) -> bool | None:
            return value <= TARGET_RATIO * duck if judged else None

        out += [
            row(f"reconcile {size}: DuckDB stock aggregation, 1 thread", m["duckdb_1t"], "s",
                **peer),
            row(f"reconcile {size}: ours, stock part (like for like)", m["stock"], "s", **peer,
                target=target, met=verdict(m["stock"])),
            row(f"reconcile {size}: ours, snapshot_from_frame", m["snapshot"], "s", **peer),
            row(f"reconcile {size}: ours, rules.evaluate", m["evaluate"], "s", **peer),
            row(f"reconcile {size}: ours, full reconcile (snapshot + evaluate)", m["reconcile"],
                "s", **peer, target=target, met=verdict(m["reconcile"])),
        ]  # fmt: skip
    big = next(s for s in result["sizes"] if s["events"] == largest)["steps"]
    size = _size(largest)
    duck = {"peer": "DuckDB peak RSS MB", "peer_value": big["duckdb"]["rss_peak_mb"]}
    inc = result["incremental"]
    out += [
        row(f"reconcile {size}: peak RSS, ours snapshot (frame included)",
            big["snapshot"]["rss_peak_mb"], "MB", **duck),
        row(f"reconcile {size}: peak RSS, ours stock part (frame included)",
            big["stock"]["rss_peak_mb"], "MB", **duck),
        row(f"reconcile incremental: IncrementalState.apply ({inc['events']:,} events)",
            inc["apply_per_s"], "events/s", peer="from_wire decode/s",
            peer_value=inc["from_wire_per_s"]),
    ]  # fmt: skip
    return out


def _size(n: int) -> str:
    return f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"


def notes(result: dict[str, Any]) -> list[str]:
    p = result["params"]
    out = [
        f"sizes {', '.join(_size(n) for n in p['sizes'])} events, median of {p['repeats']} "
        f"(interleaved); {p['warehouses']} warehouses, {p['pledged_lots']:,} pledged lots, "
        f"{p['loans']:,} loans, {p['prices']:,} prices",
        "DuckDB reads an Arrow view of the same frame; ours reads the pandas frame "
        "(Arrow-backed str columns, Int64 qty/grams)",
    ]
    for s in result["sizes"]:
        steps = s["steps"]
        grew = ", ".join(f"{name} +{_mb(steps[name]['rss_growth_mb'])}"
                         for name in ("duckdb", "stock", "snapshot", "evaluate"))  # fmt: skip
        out.append(
            f"{_size(s['events'])}: {s['history_days']:.1f} days of history, "
            f"{s['tokens']:,} release tokens; frame {s['frame_mb']:,.0f} MB (made in "
            f"{s['make_s']:.1f} s); RSS before the steps {_mb(steps['snapshot']['rss_before_mb'])} "
            f"MB, growth at peak MB: {grew}; {s['shape']['stock_lines']:,} stock lines, "
            f"{s['shape']['bay_weights']:,} weighed bays, {s['shape']['conditions']:,} "
            f"conditions {s['shape']['conditions_by_rule']}"
        )
    inc = result["incremental"]
    out.append(
        f"incremental sample: {inc['events']:,} events from the middle of the "
        f"{_size(min(p['sizes']))} frame, {inc['wire_bytes_mean']:.0f} wire bytes on average; "
        f"its snapshot() took {inc['snapshot_s']:.3f} s and equals the batch snapshot"
    )
    return out


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def table(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        f"reconcile benchmark ({'QUICK' if result['quick'] else 'full'}; Python {env['python']}, "
        f"{env['cpus']} CPUs, pandas {env['pandas']}, duckdb {env['duckdb']}, "
        f"pyarrow {env['pyarrow']}); {result['seconds']:.0f} s",
        "",
        f"{'figure':<68}{'value':>12}  {'peer':>10}{'ratio':>8}  {'target':<18}result",
    ]
    for r in result["rows"]:
        peer = "" if r["peer_value"] is None else f"{r['peer_value']:>10,.3f}"
        ratio = "" if r["ratio"] is None else f"{r['ratio']:>8.2f}"
        verdict = "(information)" if r["met"] is None else ("met" if r["met"] else "NOT MET")
        value = "—" if r["value"] is None else f"{r['value']:>12,.3f}"
        lines.append(
            f"{r['figure']:<68}{value:>12}  {peer:>10}{ratio:>8}  {r['target'] or '':<18}{verdict}"
        )
    lines += ["", *(f"note: {n}" for n in result["notes"])]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k and 300k events, 1 repeat")
    parser.add_argument("--sizes", help="comma-separated event counts")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--sample", type=int, help="events for the incremental figures")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON (- = stdout)")
    args = parser.parse_args(argv)
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else None
    result = run(args.quick, sizes, args.repeats, args.sample)
    print(table(result))
    write_json(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
