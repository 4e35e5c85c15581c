"""Batch mode: the same ``Snapshot`` as ``state.IncrementalState``, from a frame of events.

``snapshot_from_frame(events, at_ms, config)`` computes it with vectorised pandas over the
whole history (sort once by ``order_key``, then group-bys and cumulative sums; Python only
loops over the *result* rows: stock lines, bays, devices, watched unloads). Columns, one row
per stored event (``events_frame`` builds it from decoded events)::

    event_id warehouse gateway device kind release door reason bay sku lot   text (null: None/NA)
    seq ts_ms                                                                 int
    qty grams                                                                 int or null

Rows with ``ts_ms > at_ms`` are left out (the state as of ``at_ms``; ``None``: every row), and
a repeated ``event_id`` counts once. For the same set of events and an ``at_ms`` not before
any of them, the result equals ``IncrementalState.snapshot()`` field for field.

The stock algebra: within a line (warehouse, bay, lot, sku) in event order, ``segment`` counts
the COUNTs so far; stock after a row = the segment's COUNT qty (0 before the first) + the
cumulative signed movements within the segment. A row's change to the bay's book grams is
(stock after − stock before) × unit grams, so the cumulative sum of those changes per bay, in
event order, is the book weight at every WEIGHT row.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
from pledgewatch.events import Event

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
LINE = ["warehouse", "bay", "lot", "sku"]
BAY = ["warehouse", "bay"]
STOCK = ("LOAD", "UNLOAD", "COUNT")


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
    df = _prepare(events, at_ms)
    stock_rows = _stock_algebra(df[df["kind"].isin(STOCK)], config)
    return Snapshot(
        stock=_stock_lines(stock_rows),
        unloads=_unloads(df, config),
        weights=_bay_weights(df, stock_rows, config),
        devices=_devices(df),
        tampers=_tampers(df),
    )


def _prepare(events: pd.DataFrame, at_ms: int | None) -> pd.DataFrame:
    missing = [name for name in COLUMNS if name not in events.columns]
    if missing:
        raise FrameError(f"events frame: missing columns {missing}, want {list(COLUMNS)}")
    df = events.loc[:, list(COLUMNS)]
    if at_ms is not None:
        df = df[df["ts_ms"] <= at_ms]
    df = df.drop_duplicates("event_id")
    ranks = {kind.value: rank for kind, rank in RANK.items()}
    df = df.assign(rank=df["kind"].map(ranks).fillna(OTHER_RANK).astype("int64"))
    return df.iloc[_order(df)].reset_index(drop=True)


def _order(df: pd.DataFrame) -> npt.NDArray[np.intp]:
    """Row positions in ``order_key`` order. Text keys are ranked by sorted factorisation
    (same order as comparing the strings); ``event_id`` is only needed to break ties of the
    other five keys (a FORK: two events for one seq), so it is sorted on only if one exists."""
    keys = [
        df["ts_ms"].to_numpy(dtype="int64"),
        df["rank"].to_numpy(dtype="int64"),
        pd.factorize(df["gateway"], sort=True)[0],
        pd.factorize(df["device"], sort=True)[0],
        df["seq"].to_numpy(dtype="int64"),
    ]
    order = np.lexsort(keys[::-1])
    ordered = [k[order] for k in keys]
    same = np.ones(len(order) - 1, dtype=bool) if len(order) else np.zeros(0, dtype=bool)
    for k in ordered:
        same &= k[1:] == k[:-1]
    if not same.any():
        return order
    ids = pd.factorize(df["event_id"], sort=True)[0]
    return np.lexsort([ids, *keys[::-1]])


def _stock_algebra(st: pd.DataFrame, config: StateConfig) -> pd.DataFrame:
    """Adds ``line``, ``segment``, ``after`` (stock after the row) and ``delta_grams``."""
    kind = st["kind"].to_numpy()
    qty = st["qty"].to_numpy(dtype="int64", na_value=0)
    is_count = kind == "COUNT"
    signed = np.where(kind == "LOAD", qty, np.where(kind == "UNLOAD", -qty, 0))
    line = st.groupby(LINE, sort=False).ngroup().to_numpy()
    segment = pd.Series(is_count.astype("int64")).groupby(line).cumsum().to_numpy()
    keys = [line, segment]
    base = pd.Series(np.where(is_count, qty, 0)).groupby(keys).transform("first")
    after = pd.Series(signed).groupby(keys).cumsum() + base
    before = after.groupby(line).shift(1, fill_value=0)
    unit = st["sku"].map(dict(config.unit_grams)).fillna(0).to_numpy(dtype="int64")
    return st.assign(
        line=line,
        segment=segment,
        is_count=is_count,
        after=after.to_numpy(),
        delta_grams=(after - before).to_numpy() * unit,
    )


def _stock_lines(st: pd.DataFrame) -> tuple[StockLine, ...]:
    if st.empty:
        return ()
    by_line = st.groupby("line", sort=False)
    last = by_line.tail(1).set_index("line")
    counts = st[st["is_count"]].groupby("line", sort=False).tail(1).set_index("line")
    final_segment = by_line["segment"].transform("max")
    moves = (
        st[(~st["is_count"]) & (st["segment"] == final_segment)]
        .groupby("line", sort=False)["event_id"]
        .agg(tuple)
        .rename("moves")
    )
    counted = counts.loc[:, ["event_id", "ts_ms", "qty"]].rename(
        columns={"event_id": "count_id", "ts_ms": "count_ms", "qty": "count_qty"}
    )
    table = last.join(counted, how="left").join(moves, how="left")
    names = ("warehouse", "bay", "lot", "sku", "after", "count_id", "count_ms", "count_qty")
    out = [
        StockLine(
            warehouse=warehouse,
            bay=bay,
            lot=lot,
            sku=sku,
            qty=int(after),
            count_id=_text(count_id),
            count_ms=_int(count_ms),
            count_qty=_int(count_qty),
            moves=tuple(line_moves) if isinstance(line_moves, tuple) else (),
            last_ms=int(ts),
        )
        for (warehouse, bay, lot, sku, after, count_id, count_ms, count_qty), line_moves, ts in zip(
            _rows(table, names), table["moves"].tolist(), table["ts_ms"].tolist(), strict=True
        )
    ]
    out.sort(key=lambda x: (x.warehouse, x.bay, x.lot, x.sku))
    return tuple(out)


def _bay_weights(df: pd.DataFrame, st: pd.DataFrame, config: StateConfig) -> tuple[BayWeight, ...]:
    """Book grams at every WEIGHT row (cumulative stock changes per bay), then the runs."""
    both = df[df["kind"].isin((*STOCK, "WEIGHT"))]
    delta = pd.Series(0, index=both.index, dtype="int64")
    delta.loc[st.index] = st["delta_grams"].to_numpy()
    keys = [both["warehouse"], both["bay"]]
    newest = both.groupby(BAY, sort=False)["ts_ms"].transform("max")
    both = both.assign(
        book=delta.groupby(keys, sort=False).cumsum(),
        start=newest - config.weight_window_ms,
    )
    w = both[(both["kind"] == "WEIGHT") & (both["ts_ms"] >= both["start"])]
    if w.empty:
        return ()
    tol = config.tolerance
    grams = w["grams"].to_numpy(dtype="int64")
    book = w["book"].to_numpy(dtype="int64")
    limit = 10_000 * tol.grams + tol.basis_points * np.abs(book)
    w = w.assign(disagree=10_000 * np.abs(grams - book) > limit)
    position = w.groupby(BAY, sort=False).cumcount()
    agreeing = position.where(~w["disagree"], -1)
    last_agree = agreeing.groupby([w["warehouse"], w["bay"]], sort=False).transform("max")
    first_run = w[position == last_agree + 1].set_index(BAY)
    strange = st[~st["sku"].isin(list(config.unit_grams))]
    unknown: dict[Any, tuple[str, ...]] = {
        bay: tuple(sorted(set(skus))) for bay, skus in strange.groupby(BAY)["sku"].unique().items()
    }
    runs = first_run.loc[:, ["ts_ms", "event_id"]].rename(
        columns={"ts_ms": "since_ms", "event_id": "first_id"}
    )
    latest = w.groupby(BAY, sort=False).tail(1).set_index(BAY).join(runs, how="left")
    latest = latest.reset_index()
    names = ("warehouse", "bay", "device", "event_id", "ts_ms", "grams", "book", "since_ms")
    out = [
        BayWeight(
            warehouse=warehouse,
            bay=bay,
            device=device,
            latest_id=event_id,
            latest_ms=int(ts),
            grams=int(grams),
            book_grams=int(book),
            disagree_since_ms=_int(since),
            first_disagree_id=_text(first_id),
            unknown_skus=unknown.get((warehouse, bay), ()),
        )
        for (warehouse, bay, device, event_id, ts, grams, book, since), first_id in zip(
            _rows(latest, names), latest["first_id"].tolist(), strict=True
        )
    ]
    out.sort(key=lambda x: (x.warehouse, x.bay))
    return tuple(out)


def _unloads(df: pd.DataFrame, config: StateConfig) -> tuple[Unload, ...]:
    u = df[df["kind"] == "UNLOAD"]
    if config.watch_lots is not None:
        u = u[u["lot"].isin(list(config.watch_lots))]
    return tuple(
        Unload(
            event_id,
            warehouse,
            bay,
            lot,
            sku,
            int(qty),
            int(ts),
            _text(release),
        )
        for event_id, warehouse, bay, lot, sku, qty, ts, release in zip(
            *(
                u[c].tolist()
                for c in ("event_id", "warehouse", "bay", "lot", "sku", "qty", "ts_ms", "release")
            ),
            strict=True,
        )
    )


def _devices(df: pd.DataFrame) -> tuple[DeviceSeen, ...]:
    ident = ["warehouse", "gateway", "device"]
    first = df.groupby(ident)["ts_ms"].min().rename("first_ms")
    beats = df[df["kind"] == "HEARTBEAT"]
    top = beats[beats["seq"] == beats.groupby(ident)["seq"].transform("max")]
    last = (  # the highest seq; of a FORK's two heartbeats, the higher event id
        top.sort_values("event_id").groupby(ident).tail(1).set_index(ident)
    ).loc[:, ["ts_ms", "event_id"]]
    table = first.to_frame().join(last, how="left").reset_index()
    names = ("warehouse", "gateway", "device", "first_ms", "ts_ms", "event_id")
    return tuple(
        DeviceSeen(warehouse, gateway, device, int(first_ms), _int(beat_ms), _text(beat_id))
        for warehouse, gateway, device, first_ms, beat_ms, beat_id in _rows(table, names)
    )


def _tampers(df: pd.DataFrame) -> tuple[TamperSignal, ...]:
    t = df[df["kind"] == "TAMPER"]
    return tuple(
        TamperSignal(event_id, warehouse, gateway, device, int(ts), _text(bay), _text(reason) or "")
        for event_id, warehouse, gateway, device, ts, bay, reason in zip(
            *(
                t[c].tolist()
                for c in ("event_id", "warehouse", "gateway", "device", "ts_ms", "bay", "reason")
            ),
            strict=True,
        )
    )


def _rows(frame: pd.DataFrame, names: tuple[str, ...]) -> Iterator[tuple[Any, ...]]:
    """The frame's rows as tuples of plain Python values, columns ``names``."""
    return zip(*(frame[name].tolist() for name in names), strict=True)


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _int(value: Any) -> int | None:
    """A nullable int cell (an int column with gaps may have turned float: exact < 2**53)."""
    return None if _missing(value) else int(value)


def _text(value: object) -> str | None:
    """A nullable text cell as ``str | None`` (frames may hold None, NaN or pd.NA)."""
    return None if _missing(value) else str(value)
