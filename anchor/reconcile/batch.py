"""Batch mode: the same ``Snapshot`` as ``state.IncrementalState``, from a frame of events.

``snapshot_from_frame(events, at_ms, config)`` computes it with vectorised numpy over the whole
history; Python only loops over the *result* rows (stock lines, bays, devices, watched unloads).
Columns, one row per stored event (``events_frame`` builds it from decoded events; any pandas
text dtype works — object, ``str``, Arrow-backed)::

    event_id warehouse gateway device kind release door reason bay sku lot   text (null: None/NA)
    seq ts_ms                                                                 int
    qty grams                                                                 int or null

Rows with ``ts_ms > at_ms`` are left out (the state as of ``at_ms``; ``None``: every row), and
a repeated ``event_id`` counts once (its first row). For the same set of events and an
``at_ms`` not before any of them, the result equals ``IncrementalState.snapshot()`` field for
field.

How: each text column is factorised once into integer codes numbered in string order (so
comparing codes compares the strings, and a key built from several codes sorts like the tuple
of strings); ``order_key`` becomes one integer per row, sorted once (ties, which need ``seq``
and ``event_id``, are put in order among themselves); repeats of an ``event_id`` are found by
sorting 64-bit fingerprints (equal ids have equal fingerprints; rows whose fingerprints
collide are compared as strings). Stock lines, bays and devices are dense integer keys, and
every per-line and per-bay quantity is a group-wise scan in event order. Text is read back from
the frame only for the rows a result names. Arrow-backed columns are read through pyarrow
(hash kernel, raw buffers). Two worker threads overlap the work, since Arrow and numpy release
the GIL: they factorise the text columns while the main thread fingerprints the event ids, and
build the stock lines, devices, unloads and tampers while it computes the bay weights.

The stock algebra: within a line (warehouse, bay, lot, sku) in event order, stock after a row
= the qty of the line's latest COUNT so far (0 before any) + the signed movements since it
(LOAD +qty, UNLOAD −qty). A row's change to the bay's book grams is (stock after − stock
before) × unit grams, so the cumulative sum of those changes per bay, in event order, is the
book weight at every WEIGHT row.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from anchor.errors import AnchorError
from anchor.reconcile.snapshot import (
    OTHER_RANK,
    RANK,
    BayWeight,
    DeviceSeen,
    Snapshot,
    StateConfig,
    StockLine,
    TamperSignal,
    Unload,
)
from pledgewatch.events import Event, Kind

COLUMNS = (
    "event_id",
    "warehouse",
    "gateway",
    "device",
    "seq",
    "kind",
    "ts_ms",
    "bay",
    "sku",
    "lot",
    "qty",
    "grams",
    "release",
    "door",
    "reason",
)
INTS = ("seq", "ts_ms")
NULLABLE_INTS = ("qty", "grams")
CODED = ("kind", "warehouse", "gateway", "device", "bay", "lot", "sku")

# Kind codes: KINDS[i] has code i; any other kind (DOOR, unknown, null) has code OTHER.
KINDS = ("LOAD", "UNLOAD", "COUNT", "WEIGHT", "HEARTBEAT", "TAMPER")
LOAD, UNLOAD, COUNT, WEIGHT, HEARTBEAT, TAMPER = range(len(KINDS))
OTHER = len(KINDS)
_RANKS = np.array([RANK.get(Kind(k), OTHER_RANK) for k in KINDS] + [OTHER_RANK], dtype=np.int64)
_THREADS = 2  # worker threads (text columns factorised at a time; results built beside)
_SMALL_KEYS = 1 << 22  # a composite key below this indexes a lookup table directly
_MIX = np.uint64(0x9E3779B97F4A7C15)  # 2^64 / golden ratio: spreads bits when multiplied

IntArray = npt.NDArray[np.int64]
CodeArray = npt.NDArray[np.int32]
Positions = npt.NDArray[np.intp]


class FrameError(AnchorError):
    """The events frame lacks columns ``snapshot_from_frame`` needs."""


def events_frame(rows: Iterable[tuple[str, Event]]) -> pd.DataFrame:
    """One row per ``(event_id, event)``, with the columns ``snapshot_from_frame`` reads."""
    data: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for event_id, event in rows:
        body = event.to_dict()
        data["event_id"].append(event_id)
        for name in COLUMNS[1:]:
            data[name].append(body[name])
    frame = pd.DataFrame({name: pd.Series(values, dtype=object) for name, values in data.items()})
    for name in INTS:
        frame[name] = frame[name].astype("int64")
    for name in NULLABLE_INTS:
        frame[name] = frame[name].astype("Int64")
    return frame


def snapshot_from_frame(events: pd.DataFrame, at_ms: int | None, config: StateConfig) -> Snapshot:
    """The snapshot of ``events`` as of ``at_ms`` (see the module docstring); raises
    ``FrameError`` if a column is missing. Extra columns are ignored."""
    rows = _prepare(events, at_ms)
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:  # numpy frees the GIL: they overlap
        side = pool.submit(lambda: (_devices(rows), _unloads(rows, config), _tampers(rows)))
        stock = _stock_algebra(rows, config)
        lines = pool.submit(_stock_lines, rows, stock)
        weights = _bay_weights(rows, stock, config)
        devices, unloads, tampers = side.result()
        return Snapshot(lines.result(), unloads, weights, devices, tampers)


@dataclass(frozen=True, slots=True)
class _Codes:
    """A text column as codes: ``values[codes[i]]`` is row i's text (-1: null); ``values`` is
    sorted, so code order is string order."""

    codes: CodeArray
    values: list[Any]

    def text(self, codes: npt.NDArray[np.integer[Any]]) -> list[Any]:
        """The values of ``codes`` (None for -1)."""
        table = np.array([*self.values, None], dtype=object)
        return list(table[codes].tolist())


@dataclass(frozen=True, slots=True)
class _Rows:
    """The rows that count, with the frame's columns as numpy arrays.

    ``pos`` holds their frame positions in ``order_key`` order, ``kept`` in frame order (None:
    every row). ``kind``, ``ts``, ``seq`` and ``text`` have one entry per *frame* row."""

    frame: pd.DataFrame
    pos: Positions
    kept: Positions | None
    kind_in_order: npt.NDArray[np.int8]  # kind code of pos[i]
    kind: npt.NDArray[np.int8]
    ts: IntArray
    seq: IntArray
    text: dict[str, _Codes]

    def where(self, *kinds: int) -> Positions:
        """Frame positions of the rows of these kinds, in order."""
        wanted = np.zeros(OTHER + 1, dtype=bool)
        wanted[list(kinds)] = True
        return self.pos[wanted[self.kind_in_order]]

    def strings(self, column: str, at: Positions) -> list[Any]:
        """The frame's values of ``column`` at positions ``at``, as Python objects."""
        return list(self.frame[column].take(at).tolist())


def _prepare(events: pd.DataFrame, at_ms: int | None) -> _Rows:
    missing = [name for name in COLUMNS if name not in events.columns]
    if missing:
        raise FrameError(f"events frame: missing columns {missing}, want {list(COLUMNS)}")
    ts = events["ts_ms"].to_numpy(dtype="int64")
    keep: Positions | None = None
    if at_ms is not None and len(ts) and ts.max() > at_ms:
        keep = np.flatnonzero(ts <= at_ms)
    with ThreadPoolExecutor(max_workers=_THREADS) as pool:  # Arrow frees the GIL, as numpy
        coded = pool.map(_factorize, [events[name] for name in CODED])
        keep = _first_of_each(events["event_id"], keep)  # beside them
        text = dict(zip(CODED, coded, strict=True))
    kind_table = np.array(
        [KINDS.index(v) if v in KINDS else OTHER for v in text["kind"].values] + [OTHER],
        dtype=np.int8,
    )
    kind = kind_table[text["kind"].codes]
    seq = events["seq"].to_numpy(dtype="int64")
    pos = _order(events["event_id"], keep, ts, kind, text, seq)
    return _Rows(events, pos, keep, kind[pos], kind, ts, seq, text)


def _arrow(column: pd.Series) -> Any:
    """The column as one ``pyarrow.Array`` if it is Arrow-backed (no copy unless it has
    several chunks), else None."""
    dtype = column.dtype
    if isinstance(dtype, pd.ArrowDtype) or (
        isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"
    ):
        pa, _ = _pyarrow()
        return pa.array(column)
    return None


def _pyarrow() -> tuple[Any, Any]:
    """``pyarrow`` and ``pyarrow.compute``: only asked for with Arrow-backed columns in hand,
    so installed (pandas itself needs it for them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa, pc


def _factorize(column: pd.Series) -> _Codes:
    array = _arrow(column)
    if array is not None:  # Arrow's hash kernel, without pandas' conversions
        _, pc = _pyarrow()
        encoded = pc.dictionary_encode(array)
        codes = pc.fill_null(encoded.indices, -1).to_numpy().astype(np.int32, copy=False)
        values = encoded.dictionary.to_pylist()
    else:
        codes, uniques = pd.factorize(column)
        values = uniques.tolist()
    rank = sorted(range(len(values)), key=values.__getitem__)  # Python's string order
    if rank != list(range(len(values))):
        renumber = np.empty(len(values) + 1, dtype=np.int32)
        renumber[rank] = np.arange(len(values))
        renumber[-1] = -1
        codes = renumber[codes]
        values = [values[i] for i in rank]
    return _Codes(codes.astype(np.int32, copy=False), values)


def _first_of_each(ids: pd.Series, keep: Positions | None) -> Positions | None:
    """``keep`` (None: every row) without the rows whose event_id an earlier kept row has."""
    fingerprint = _fingerprints(ids)
    if keep is not None:
        fingerprint = fingerprint[keep]
    ordered = np.sort(fingerprint)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return keep
    at = np.arange(len(ids)) if keep is None else keep
    suspects = at[np.isin(fingerprint, repeated)]
    seen: set[Any] = set()
    dropped = []
    for position, value in zip(suspects.tolist(), ids.take(suspects).tolist(), strict=True):
        key = None if _missing(value) else value  # like drop_duplicates: all nulls are one value
        if key in seen:
            dropped.append(position)
        seen.add(key)
    return np.setdiff1d(at, np.array(dropped, dtype=np.intp), assume_unique=True)


def _fingerprints(values: pd.Series) -> npt.NDArray[np.uint64]:
    """64 bits per value; equal values have equal fingerprints (unequal ones almost never)."""
    fixed = _fixed_width_fingerprints(values)
    if fixed is not None:
        return fixed
    objects = values.to_numpy(dtype=object)
    out = np.fromiter(map(hash, objects), dtype=np.int64, count=len(objects)).view(np.uint64)
    nulls = values.isna().to_numpy(dtype=bool)
    if nulls.any():
        out[nulls] = 0
    return out


def _fixed_width_fingerprints(values: pd.Series) -> npt.NDArray[np.uint64] | None:
    """For Arrow text whose values all have one byte length >= 8 (event ids: 64 hex digits),
    words read straight from the Arrow buffer: no Python object per row. Else None."""
    array = _arrow(values)
    if array is None or not len(array) or array.null_count:
        return None
    pa, pc = _pyarrow()
    if pa.types.is_string(array.type):
        width: type[np.signedinteger[Any]] = np.int32
    elif pa.types.is_large_string(array.type):
        width = np.int64
    else:
        return None
    lengths = pc.min_max(pc.binary_length(array))
    size = lengths["min"].as_py()
    if size < 8 or lengths["max"].as_py() != size:
        return None
    _, offsets, data = array.buffers()
    start = int(np.frombuffer(offsets, dtype=width)[array.offset])
    out = np.full(len(array), size, dtype=np.uint64)
    for at in sorted({0, size - 8}):  # the first and the last 8 bytes
        out ^= np.ndarray(
            (len(array),), dtype="<u8", buffer=data, offset=start + at, strides=(size,)
        )
        out *= _MIX
        out ^= out >> np.uint64(29)
    return out


def _order(
    ids: pd.Series,
    keep: Positions | None,
    ts: IntArray,
    kind: npt.NDArray[np.int8],
    text: dict[str, _Codes],
    seq: IntArray,
) -> Positions:
    """Frame positions of the kept rows in ``order_key`` order: (ts_ms, rank, gateway, device)
    as one integer, sorted; rows equal on those are put in (seq, event_id) order."""
    gateway, device = text["gateway"], text["device"]
    gateways, devices = len(gateway.values) + 1, len(device.values) + 1
    width = 4 * gateways * devices  # rank is 0..3
    small = np.int32 if width < 1 << 31 else np.int64  # 32-bit arithmetic where it fits
    minor: npt.NDArray[Any] = (_RANKS.astype(small) * gateways)[kind]
    minor += gateway.codes
    minor += 1
    minor *= devices
    minor += device.codes
    minor += 1
    if keep is not None:
        ts, minor, seq = ts[keep], minor[keep], seq[keep]
    if not len(ts):
        return np.zeros(0, dtype=np.intp)
    low = int(ts.min())
    if (int(ts.max()) - low + 1) * width < 1 << 62:
        key = ts - low
        key *= width
        key += minor
        order = np.argsort(key, kind="stable")  # stable: fast on rows already near time order
        ordered = key[order]
        tied = np.flatnonzero(ordered[1:] == ordered[:-1])
    else:  # too wide for one integer
        order = np.lexsort((minor, ts))
        same = (ts[order][1:] == ts[order][:-1]) & (minor[order][1:] == minor[order][:-1])
        tied = np.flatnonzero(same)
    if len(tied):
        _break_ties(order, tied, seq, ids if keep is None else ids.take(keep))
    return order if keep is None else keep[order]


def _break_ties(order: Positions, tied: Positions, seq: IntArray, ids: pd.Series) -> None:
    """Reorders, in place, each run of ``order`` whose rows are equal on (ts_ms, rank,
    gateway, device) — ``order[i]`` and ``order[i + 1]`` for ``i`` in ``tied`` — by (seq,
    event_id); the event ids are compared as strings."""
    slots = np.union1d(tied, tied + 1)
    run = np.cumsum(~np.isin(slots - 1, tied))  # a run starts where a slot is not tied back
    rows = order[slots]
    id_rank = _factorize(ids.take(rows).reset_index(drop=True)).codes
    order[slots] = rows[np.lexsort((id_rank, seq[rows], run))]


def _dense(columns: Sequence[_Codes], at: Positions | None) -> tuple[IntArray, int]:
    """Numbers 0..n-1 for the distinct tuples of ``columns`` at ``at`` (None: every row), in
    tuple order: the codes (+1, so null is 0) as digits of one integer, then renumbered."""
    widths = [len(c.values) + 1 for c in columns]
    narrow = math.prod(widths) < 1 << 31  # 32-bit arithmetic: half the memory traffic
    key: npt.NDArray[np.signedinteger[Any]] | None = None
    size = 1
    for column, width in zip(columns, widths, strict=True):
        codes = column.codes if at is None else column.codes[at]
        if key is None:
            key = codes.astype(np.int32 if narrow else np.int64)
        else:
            if size * width >= 1 << 62:
                key, size = _renumber(key, size)
            key *= width
            key += codes
        key += 1
        size *= width
    assert key is not None
    return _renumber(key, size)


def _renumber(key: npt.NDArray[np.signedinteger[Any]], size: int) -> tuple[IntArray, int]:
    if size <= max(_SMALL_KEYS, len(key)):
        present = np.zeros(size, dtype=bool)
        present[key] = True
        number = np.cumsum(present) - 1
        return number[key], int(present.sum())
    codes, uniques = pd.factorize(key, sort=True)
    return codes.astype(np.int64, copy=False), len(uniques)


def _by(groups: IntArray) -> npt.NDArray[np.int32]:
    """Dense group numbers as a group-by key: pandas hashes 32-bit keys fastest, and its
    group-wise scans keep the rows' order."""
    return groups.astype(np.int32)


@dataclass(frozen=True, slots=True)
class _Stock:
    """The LOAD/UNLOAD/COUNT rows in order, their lines (numbered in tuple order) and the
    stock algebra's results."""

    at: Positions  # frame positions
    line: IntArray
    is_count: npt.NDArray[np.bool_]
    after: IntArray  # stock of the line after the row
    delta_grams: IntArray  # the row's change to its bay's book grams
    last: Positions  # per line: its last row
    counted: Positions  # per line: its last COUNT row, -1 if none


def _stock_algebra(rows: _Rows, config: StateConfig) -> _Stock:
    at = rows.where(LOAD, UNLOAD, COUNT)
    t = rows.text
    line, lines = _dense((t["warehouse"], t["bay"], t["lot"], t["sku"]), at)
    kind = rows.kind[at]
    qty = rows.frame["qty"].to_numpy(dtype="int64", na_value=0)[at]
    is_count = kind == COUNT
    signed = np.where(kind == LOAD, qty, np.where(kind == UNLOAD, -qty, 0))
    index = np.arange(len(at))
    by_line = pd.DataFrame({"signed": signed, "count": np.where(is_count, index, -1)}).groupby(
        _by(line), sort=False
    )
    running = by_line["signed"].cumsum().to_numpy()  # Σ movements of the line so far
    count = by_line["count"].cummax().to_numpy()  # the line's latest COUNT so far, -1: none
    # stock after a row = the latest COUNT's qty + the movements since it (all, before any)
    reset = np.where(is_count, qty - running, 0)
    after = running + np.where(count >= 0, reset[np.maximum(count, 0)], 0)
    # a movement changes the stock by its signed qty; a COUNT by its qty - the stock before
    # it, which the line's previous COUNT (if any) and the movements since that one set
    counts = np.flatnonzero(is_count)
    counts = counts[np.argsort(line[counts], kind="stable")]  # grouped by line, in order
    previous = np.full(len(counts), -1, dtype=np.intp)
    same_line = line[counts][1:] == line[counts][:-1]
    previous[1:][same_line] = counts[:-1][same_line]
    change = signed.copy()
    change[counts] = qty[counts] - (
        running[counts] + np.where(previous >= 0, reset[np.maximum(previous, 0)], 0)
    )
    sku = t["sku"]
    unit = np.array([config.unit_grams.get(v, 0) for v in sku.values] + [0], dtype=np.int64)
    last = np.full(lines, -1, dtype=np.intp)
    np.maximum.at(last, line, index)
    return _Stock(
        at=at,
        line=line,
        is_count=is_count,
        after=after,
        delta_grams=change * unit[sku.codes[at]],
        last=last,
        counted=count[last],
    )


def _stock_lines(rows: _Rows, st: _Stock) -> tuple[StockLine, ...]:
    if not len(st.at):
        return ()
    t = rows.text
    heads = st.at[st.last]
    names = [t[c].text(t[c].codes[heads]) for c in ("warehouse", "bay", "lot", "sku")]
    # the moves: movements after the line's last COUNT, grouped by line, in order
    moves = np.flatnonzero(~st.is_count & (np.arange(len(st.at)) > st.counted[st.line]))
    moves = moves[np.argsort(st.line[moves], kind="stable")]
    cuts = np.r_[0, np.cumsum(np.bincount(st.line[moves], minlength=len(st.last)))].tolist()
    move_ids = rows.strings("event_id", st.at[moves])
    has_count = st.counted >= 0
    count_at = st.at[st.counted[has_count]]
    lines = len(st.last)
    count_ids: list[str | None] = [None] * lines
    count_ms: list[int | None] = [None] * lines
    count_qty: list[int | None] = [None] * lines
    for i, count_id, ms, qty in zip(
        np.flatnonzero(has_count).tolist(),
        rows.strings("event_id", count_at),
        rows.ts[count_at].tolist(),
        rows.strings("qty", count_at),
        strict=True,
    ):
        count_ids[i], count_ms[i], count_qty[i] = _text(count_id), ms, _int(qty)
    return tuple(
        StockLine(wh, bay, lot, sku, qty, count_id, ms, count_n, tuple(move_ids[a:z]), last_ms)
        for wh, bay, lot, sku, qty, count_id, ms, count_n, a, z, last_ms in zip(
            *names,
            st.after[st.last].tolist(),
            count_ids,
            count_ms,
            count_qty,
            cuts[:-1],
            cuts[1:],
            rows.ts[heads].tolist(),
            strict=True,
        )
    )


def _bay_weights(rows: _Rows, st: _Stock, config: StateConfig) -> tuple[BayWeight, ...]:
    """Book grams at every WEIGHT row (cumulative stock changes per bay), then the runs."""
    at = rows.where(LOAD, UNLOAD, COUNT, WEIGHT)
    t = rows.text
    bay, bays = _dense((t["warehouse"], t["bay"]), at)
    weighing = rows.kind[at] == WEIGHT
    ts = rows.ts[at]
    newest = np.full(bays, np.iinfo(np.int64).min)
    np.maximum.at(newest, bay, ts)
    # the stock rows and the weighings in their bay's window, still in event order
    kept = ~weighing | (ts >= (newest - config.weight_window_ms)[bay])
    at, bay, weighing = at[kept], bay[kept], weighing[kept]
    w = np.flatnonzero(weighing)
    if not len(w):
        return ()
    delta = np.zeros(len(at), dtype=np.int64)
    delta[~weighing] = st.delta_grams  # both in event order
    book = pd.Series(delta).groupby(_by(bay), sort=False).cumsum().to_numpy()
    tol = config.tolerance
    grams = _weighed_grams(rows, at[w])
    book, bay = book[w], bay[w]
    limit = 10_000 * tol.grams + tol.basis_points * np.abs(book)
    disagree = 10_000 * np.abs(grams - book) > limit
    index = np.arange(len(w))
    latest = np.full(bays, -1, dtype=np.intp)
    np.maximum.at(latest, bay, index)
    agreed = np.full(bays, -1, dtype=np.intp)  # each bay's last agreeing weighing
    np.maximum.at(agreed, bay, np.where(disagree, -1, index))
    in_run = index > agreed[bay]  # the weighings after it: the run of disagreement
    run = np.full(bays, len(w), dtype=np.intp)
    np.minimum.at(run, bay[in_run], index[in_run])
    weighed = latest >= 0  # bays with a weighing in their window, in (warehouse, bay) order
    latest, run = latest[weighed], run[weighed]
    has_run = run < len(w)
    last_at, since = at[w[latest]], at[w[run[has_run]]]
    names = [t[c].text(t[c].codes[last_at]) for c in ("warehouse", "bay", "device")]
    runs = iter(zip(rows.ts[since].tolist(), rows.strings("event_id", since), strict=True))
    unknown = _unknown_skus(rows, st, config)
    out = []
    for warehouse, bay_name, device, event_id, ts_ms, g, b, disagreeing in zip(
        *names,
        rows.strings("event_id", last_at),
        rows.ts[last_at].tolist(),
        grams[latest].tolist(),
        book[latest].tolist(),
        has_run.tolist(),
        strict=True,
    ):
        since_ms, first_id = next(runs) if disagreeing else (None, None)
        out.append(
            BayWeight(
                warehouse=warehouse,
                bay=bay_name,
                device=device,
                latest_id=event_id,
                latest_ms=ts_ms,
                grams=g,
                book_grams=b,
                disagree_since_ms=since_ms,
                first_disagree_id=first_id,
                unknown_skus=unknown.get((warehouse, bay_name), ()),
            )
        )
    return tuple(out)


def _weighed_grams(rows: _Rows, at: Positions) -> IntArray:
    grams = rows.frame["grams"].take(at)
    if grams.isna().any():
        raise FrameError("events frame: a WEIGHT row has no grams")
    return grams.to_numpy(dtype="int64")


def _unknown_skus(
    rows: _Rows, st: _Stock, config: StateConfig
) -> dict[tuple[Any, Any], tuple[str, ...]]:
    """SKUs with no unit weight ever stocked in each (warehouse, bay)."""
    t = rows.text
    sku = t["sku"]
    strange = np.array([v not in config.unit_grams for v in sku.values] + [False])
    at = st.at[strange[sku.codes[st.at]]]
    if not len(at):
        return {}
    key, _ = _dense((t["warehouse"], t["bay"], sku), at)
    _, first = np.unique(key, return_index=True)
    found: dict[tuple[Any, Any], list[str]] = {}
    pairs = at[first]
    for warehouse, bay, name in zip(
        *(t[c].text(t[c].codes[pairs]) for c in ("warehouse", "bay", "sku")), strict=True
    ):
        found.setdefault((warehouse, bay), []).append(name)
    return {bay: tuple(sorted(set(names))) for bay, names in found.items()}


def _unloads(rows: _Rows, config: StateConfig) -> tuple[Unload, ...]:
    at = rows.where(UNLOAD)
    if config.watch_lots is not None:
        lot = rows.text["lot"]
        watched = np.array([v in config.watch_lots for v in lot.values] + [False])
        at = at[watched[lot.codes[at]]]
    columns = ("event_id", "warehouse", "bay", "lot", "sku", "qty", "ts_ms", "release")
    return tuple(
        Unload(event_id, warehouse, bay, lot, sku, int(qty), int(ts), _text(release))
        for event_id, warehouse, bay, lot, sku, qty, ts, release in zip(
            *(rows.strings(c, at) for c in columns), strict=True
        )
    )


def _devices(rows: _Rows) -> tuple[DeviceSeen, ...]:
    """First event and last heartbeat per (warehouse, gateway, device); rows with a null in
    those are left out, as a group-by leaves them out. Row order does not matter here."""
    t = rows.text
    ident = (t["warehouse"], t["gateway"], t["device"])
    named = (ident[0].codes >= 0) & (ident[1].codes >= 0) & (ident[2].codes >= 0)
    if rows.kept is not None:
        kept = np.zeros(len(named), dtype=bool)
        kept[rows.kept] = True
        named &= kept
    at = None if named.all() else np.flatnonzero(named)
    device, count = _dense(ident, at)
    if not count:
        return ()
    ts = rows.ts if at is None else rows.ts[at]
    kind = rows.kind if at is None else rows.kind[at]
    positions = np.arange(len(named)) if at is None else at
    first_ms = np.full(count, np.iinfo(np.int64).max)
    np.minimum.at(first_ms, device, ts)
    beats = kind == HEARTBEAT
    beat_at, beat_device = positions[beats], device[beats]
    top = np.full(count, np.iinfo(np.int64).min)
    np.maximum.at(top, beat_device, rows.seq[beat_at])
    tops = rows.seq[beat_at] == top[beat_device]
    chosen: dict[int, tuple[Any, int]] = {}  # device -> (event id, frame position)
    for d, position, event_id in zip(
        beat_device[tops].tolist(),
        beat_at[tops].tolist(),
        rows.strings("event_id", beat_at[tops]),
        strict=True,
    ):  # the highest seq; of a FORK's two heartbeats, the higher event id
        if d not in chosen or event_id > chosen[d][0]:
            chosen[d] = (event_id, position)
    heads = np.empty(count, dtype=np.intp)
    heads[device] = positions  # any row of a device names it
    names = [c.text(c.codes[heads]) for c in ident]
    out = []
    for d, (warehouse, gateway, name, first) in enumerate(
        zip(*names, first_ms.tolist(), strict=True)
    ):
        beat = chosen.get(d)
        beat_ms = None if beat is None else int(rows.ts[beat[1]])
        out.append(
            DeviceSeen(warehouse, gateway, name, first, beat_ms, None if beat is None else beat[0])
        )
    return tuple(out)


def _tampers(rows: _Rows) -> tuple[TamperSignal, ...]:
    at = rows.where(TAMPER)
    columns = ("event_id", "warehouse", "gateway", "device", "ts_ms", "bay", "reason")
    return tuple(
        TamperSignal(event_id, warehouse, gateway, device, int(ts), _text(bay), _text(reason) or "")
        for event_id, warehouse, gateway, device, ts, bay, reason in zip(
            *(rows.strings(c, at) for c in columns), strict=True
        )
    )


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _int(value: Any) -> int | None:
    """A nullable int cell (an int column with gaps may have turned float: exact < 2**53)."""
    return None if _missing(value) else int(value)


def _text(value: object) -> str | None:
    """A nullable text cell as ``str | None`` (frames may hold None, NaN or pd.NA)."""
    return None if _missing(value) else str(value)
