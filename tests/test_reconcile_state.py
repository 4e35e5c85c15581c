"""The snapshot both reconciler modes share: stock algebra, weighings, heartbeats, late events.

Every synthetic case goes through ``both``: the incremental state fed in order and in reverse
must equal the batch snapshot of the same events. The property tests feed the faults
scenario in random orders, cut at random points, against the batch snapshot of each prefix.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_reconcile_sim import pairs, shipped, sim_events, state_config

from anchor.errors import ConfigError
from anchor.reconcile.batch import FrameError, events_frame, snapshot_from_frame
from anchor.reconcile.snapshot import Snapshot, WeightTolerance
from anchor.reconcile.state import IncrementalState, StateConfig
from pledgewatch.events import ZERO_HASH, DoorState, Event, Kind

H = 3_600_000
T0 = 1_711_929_600_000  # 2024-04-01T00:00:00Z
UNITS = {"steel": 25_000, "soy": 50_000}
CONFIG = StateConfig(unit_grams=UNITS, tolerance=WeightTolerance(grams=1_000, basis_points=0))


class Feed:
    """Events of one warehouse/gateway, chained per device like a gateway does."""

    def __init__(self, warehouse: str = "wh-1", gateway: str = "gw-1") -> None:
        self.warehouse, self.gateway = warehouse, gateway
        self.events: list[tuple[str, Event]] = []
        self._chains: dict[str, tuple[int, str]] = {}

    def add(self, kind: Kind, device: str, ts_ms: int, **fields: Any) -> str:
        seq, prev = self._chains.get(device, (0, ZERO_HASH))
        event = Event(
            kind=kind,
            warehouse=self.warehouse,
            gateway=self.gateway,
            device=device,
            seq=seq + 1,
            prev=prev,
            ts_ms=ts_ms,
            **fields,
        )
        event_id = event.event_id()
        self._chains[device] = (seq + 1, event_id)
        self.events.append((event_id, event))
        return event_id

    def load(
        self, ts: int, qty: int, lot: str = "wr-1", sku: str = "steel", bay: str = "a1"
    ) -> str:
        return self.add(Kind.LOAD, "portal-in", ts, bay=bay, sku=sku, lot=lot, qty=qty)

    def unload(
        self,
        ts: int,
        qty: int,
        lot: str = "wr-1",
        sku: str = "steel",
        bay: str = "a1",
        release: str | None = None,
    ) -> str:
        return self.add(
            Kind.UNLOAD, "portal-out", ts, bay=bay, sku=sku, lot=lot, qty=qty, release=release
        )

    def count(
        self, ts: int, qty: int, lot: str = "wr-1", sku: str = "steel", bay: str = "a1"
    ) -> str:
        return self.add(Kind.COUNT, "portal-in", ts, bay=bay, sku=sku, lot=lot, qty=qty)

    def weight(self, ts: int, grams: int, bay: str = "a1") -> str:
        return self.add(Kind.WEIGHT, f"cell-{bay}", ts, bay=bay, grams=grams)

    def beat(self, ts: int, device: str) -> str:
        return self.add(Kind.HEARTBEAT, device, ts)


def both(
    events: Sequence[tuple[str, Event]], config: StateConfig = CONFIG, at_ms: int | None = None
) -> Snapshot:
    """The snapshot, after checking in-order, reversed and batch all give the same one."""
    snaps = []
    for order in (list(events), list(reversed(events))):
        state = IncrementalState(config)
        for event_id, event in order:
            if at_ms is None or event.ts_ms <= at_ms:
                state.apply(event, event_id)
        snaps.append(state.snapshot())
    batch = snapshot_from_frame(events_frame(events), at_ms, config)
    assert snaps[0] == batch
    assert snaps[1] == batch
    return batch


def test_count_sets_the_stock_loads_add_unloads_subtract() -> None:
    f = Feed()
    f.load(T0, 40)
    f.unload(T0 + H, 5)
    counted = f.count(T0 + 2 * H, 30)  # stocktake: 5 units unaccounted for
    loaded = f.load(T0 + 3 * H, 8)
    unloaded = f.unload(T0 + 4 * H, 3)
    (line,) = both(f.events).stock
    assert line.qty == 30 + 8 - 3
    assert (line.count_id, line.count_qty, line.count_ms) == (counted, 30, T0 + 2 * H)
    assert line.moves == (loaded, unloaded)
    assert line.evidence == (counted, loaded, unloaded)
    assert line.last_ms == T0 + 4 * H


def test_a_stocktake_at_the_same_millisecond_as_a_movement_includes_it() -> None:
    f = Feed()
    f.load(T0, 10)
    f.count(T0 + H, 14)
    f.load(T0 + H, 4)  # same ms as the COUNT: the COUNT already saw it
    (line,) = both(f.events).stock
    assert line.qty == 14 and line.moves == ()


def test_lines_are_per_bay_lot_and_sku_and_warehouses_stay_apart() -> None:
    a, b = Feed("wh-1"), Feed("wh-2", "gw-2")
    a.load(T0, 10, lot="wr-1", bay="a1")
    a.load(T0, 7, lot="wr-1", bay="a2")
    a.load(T0, 3, lot="wr-2", sku="soy", bay="a1")
    b.load(T0, 99, lot="wr-1", bay="a1")
    snap = both(a.events + b.events)
    got = [(s.warehouse, s.bay, s.lot, s.sku, s.qty) for s in snap.stock]
    assert got == [
        ("wh-1", "a1", "wr-1", "steel", 10),
        ("wh-1", "a1", "wr-2", "soy", 3),
        ("wh-1", "a2", "wr-1", "steel", 7),
        ("wh-2", "a1", "wr-1", "steel", 99),
    ]
    assert snap.warehouses() == ("wh-1", "wh-2")


def test_a_late_load_before_the_stocktake_changes_nothing_after_it() -> None:
    f = Feed()
    f.count(T0 + 2 * H, 20)
    f.load(T0 + 3 * H, 5)
    f.load(T0 + H, 100)  # signed before the stocktake, arrives last
    f.count(T0, 1)  # an older stocktake arriving late
    (line,) = both(f.events).stock
    assert line.qty == 25 and line.count_qty == 20 and len(line.moves) == 1


def test_heartbeat_latest_follows_seq_even_when_the_clock_runs_back() -> None:
    f = Feed()
    f.beat(T0 + 2 * H, "door-1")
    last = f.beat(T0 + H, "door-1")  # seq 2, clock set back
    f.add(Kind.DOOR, "door-1", T0 + 30 * 60_000, door=DoorState.OPEN, bay="dock-1")
    (device,) = both(f.events).devices
    assert (device.last_heartbeat_id, device.last_heartbeat_ms) == (last, T0 + H)
    assert device.first_ms == T0 + 30 * 60_000
    (gateway,) = both(f.events).gateways()
    assert gateway.devices == ("door-1",) and gateway.last_heartbeat_ms == T0 + H


def test_a_fork_two_events_for_one_seq_is_ordered_by_event_id_in_both_modes() -> None:
    f = Feed()
    f.beat(T0, "portal-in")
    twins = []
    for qty in (30, 31):  # the gateway signed two different COUNTs as seq 2
        event = Event(
            kind=Kind.COUNT,
            warehouse="wh-1",
            gateway="gw-1",
            device="portal-in",
            seq=2,
            prev=f.events[0][0],
            ts_ms=T0 + H,
            bay="a1",
            sku="steel",
            lot="wr-1",
            qty=qty,
        )
        twins.append((event.event_id(), event))
    beat_twins = [
        (e.event_id(), e)
        for e in (
            Event(Kind.HEARTBEAT, "wh-1", "gw-1", "portal-in", 3, twins[0][0], T0 + 2 * H),
            Event(Kind.HEARTBEAT, "wh-1", "gw-1", "portal-in", 3, twins[1][0], T0 + 2 * H + 1),
        )
    ]
    snap = both(f.events + twins + beat_twins)
    later = max(twins)  # the higher event id sorts last: its COUNT sets the stock
    assert snap.stock[0].count_id == later[0] and snap.stock[0].qty == later[1].qty
    assert snap.devices[0].last_heartbeat_id == max(beat_twins)[0]


def test_weighings_disagreeing_since_their_first_and_agreeing_again_clears() -> None:
    f = Feed()
    f.load(T0, 40)  # 1 000 000 g
    f.weight(T0 + H, 1_000_400)
    first = f.weight(T0 + 2 * H, 975_000)  # one coil gone, nothing recorded
    latest = f.weight(T0 + 3 * H, 975_200)
    (bay,) = both(f.events).weights
    assert (bay.disagree_since_ms, bay.first_disagree_id) == (T0 + 2 * H, first)
    assert (bay.latest_id, bay.grams, bay.book_grams, bay.device) == (
        latest,
        975_200,
        1_000_000,
        "cell-a1",
    )
    f.unload(T0 + 3 * H + 1, 1)  # the unload is recorded after all
    f.weight(T0 + 4 * H, 975_100)
    (bay,) = both(f.events).weights
    assert bay.disagree_since_ms is None and bay.first_disagree_id is None


def test_a_late_unload_re_judges_the_weighings_it_explains() -> None:
    f = Feed()
    f.load(T0, 40)
    f.weight(T0 + H, 1_000_000)
    f.weight(T0 + 2 * H, 975_000)
    f.weight(T0 + 3 * H, 975_000)
    state = IncrementalState(CONFIG)
    for event_id, event in f.events:
        state.apply(event, event_id)
    assert state.snapshot().weights[0].disagree_since_ms == T0 + 2 * H
    late = f.unload(T0 + 90 * 60_000, 1)  # between the weighings, delivered late
    state.apply(f.events[-1][1], late)
    assert state.snapshot().weights[0].disagree_since_ms is None
    assert state.snapshot() == both(f.events)


def test_tolerance_is_grams_plus_basis_points_of_the_book() -> None:
    tolerance = WeightTolerance(grams=1_000, basis_points=100)  # 1 kg + 1 %
    assert not tolerance.exceeded(1_011_000, 1_000_000)
    assert tolerance.exceeded(1_011_001, 1_000_000)
    assert not tolerance.exceeded(989_000, 1_000_000)
    assert tolerance.exceeded(998_999, 1_000_000) is False
    assert tolerance.exceeded(-1_001, 0) is True


def test_only_the_window_counts_and_runs_start_inside_it() -> None:
    config = StateConfig(unit_grams=UNITS, weight_window_ms=10 * H)
    f = Feed()
    f.load(T0, 40)
    for hour in range(1, 30):
        f.weight(T0 + hour * H, 900_000)  # disagrees from the first weighing on
    (bay,) = both(f.events, config).weights
    assert bay.disagree_since_ms == T0 + 19 * H  # newest (29 h) - window (10 h)
    snap = both(f.events, config, at_ms=T0 + 5 * H)
    assert snap.weights[0].disagree_since_ms == T0 + H and snap.weights[0].latest_ms == T0 + 5 * H


def test_a_late_event_re_sweeps_the_window_from_history_kept_for_it() -> None:
    """Pruning keeps each line from its last COUNT at or before the window start: the weighing
    just before a stocktake inside the window must still see the stock before it."""
    config = StateConfig(unit_grams=UNITS, weight_window_ms=2 * H)
    f = Feed()
    f.load(T0, 40)
    quarter = 15 * 60_000
    for i in range(24):  # 0:00 .. 5:45; the window starts at 3:45
        f.weight(T0 + i * quarter, 1_000_000 if i < 16 else 900_000)
    f.count(T0 + 4 * H, 40)
    f.add(Kind.DOOR, "door-1", T0, door=DoorState.OPEN)
    f.load(T0 + 10, 1, lot="wr-2", bay="b1")  # late, elsewhere
    f.load(T0 + 20, 1, lot="wr-1")  # late, in a1: the bay is swept again
    f.unload(T0 + 30, 1, lot="wr-1")
    (bay,) = both(f.events, config).weights
    assert bay.disagree_since_ms == T0 + 4 * H


def test_a_bay_whose_newest_weighing_left_the_window_has_no_weight_entry() -> None:
    config = StateConfig(unit_grams=UNITS, weight_window_ms=H)
    f = Feed()
    f.weight(T0, 0)
    f.load(T0 + 2 * H, 1)
    assert both(f.events, config).weights == ()


def test_unknown_skus_are_listed_and_count_zero_grams() -> None:
    f = Feed()
    f.load(T0, 2, lot="wr-9", sku="mystery")
    f.load(T0, 1)
    f.weight(T0 + H, 25_000)
    (bay,) = both(f.events).weights
    assert bay.unknown_skus == ("mystery",) and bay.book_grams == 25_000


def test_unloads_are_in_event_order_and_only_for_watched_lots() -> None:
    f = Feed()
    f.load(T0, 50, lot="wr-1")
    f.load(T0, 50, lot="wr-2")
    second = f.unload(T0 + 2 * H, 4, lot="wr-1", release="rel-2")
    first = f.unload(T0 + H, 3, lot="wr-1")
    f.unload(T0 + H, 9, lot="wr-2")
    config = StateConfig(unit_grams=UNITS, watch_lots=frozenset({"wr-1"}))
    snap = both(f.events, config)
    assert [(u.event_id, u.qty, u.release) for u in snap.unloads] == [
        (first, 3, None),
        (second, 4, "rel-2"),
    ]
    assert len(both(f.events).unloads) == 3


def test_tamper_events_are_kept_with_their_reason() -> None:
    f = Feed()
    tamper = f.add(Kind.TAMPER, "door-1", T0, reason="housing opened", bay="dock-1")
    (signal,) = both(f.events).tampers
    assert (signal.event_id, signal.reason, signal.bay, signal.device) == (
        tamper,
        "housing opened",
        "dock-1",
        "door-1",
    )


def test_batch_leaves_out_later_rows_and_counts_a_repeated_row_once() -> None:
    f = Feed()
    f.load(T0, 10)
    f.load(T0 + 2 * H, 5)
    frame = events_frame(f.events + f.events[:1])
    (line,) = snapshot_from_frame(frame, T0 + H, CONFIG).stock
    assert line.qty == 10
    (line,) = snapshot_from_frame(frame, None, CONFIG).stock
    assert line.qty == 15


def test_batch_accepts_nan_for_nulls_and_refuses_a_frame_without_columns() -> None:
    f = Feed()
    f.load(T0, 10)
    f.unload(T0 + H, 2)
    frame = events_frame(f.events)
    as_floats = frame.assign(release=[float("nan")] * 2, qty=frame["qty"].astype("float64"))
    assert snapshot_from_frame(as_floats, None, CONFIG) == both(f.events)
    with pytest.raises(FrameError, match=r"missing columns \['grams'\]"):
        snapshot_from_frame(frame.drop(columns=["grams"]), None, CONFIG)
    assert snapshot_from_frame(pd.DataFrame(columns=frame.columns), None, CONFIG) == Snapshot(
        (), (), (), (), ()
    )


def test_config_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        StateConfig(
            unit_grams={"steel": 0},
            tolerance=WeightTolerance(grams=-1, basis_points=20_000),
            weight_window_ms=0,
        )
    assert len(caught.value.problems) == 4


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.floats(0, 1), min_size=1, max_size=3))
def test_faults_scenario_in_any_order_matches_the_batch_of_what_arrived(
    seed: int, cuts: list[float]
) -> None:
    scenario = shipped("faults")
    events = pairs(sim_events(scenario))
    rng = random.Random(seed)
    # a mix of near-order (late deliveries) and arbitrary order
    shuffled = sorted(events, key=lambda e: e[1].ts_ms + rng.randrange(-6 * H, 6 * H))
    if seed % 3 == 0:
        rng.shuffle(shuffled)
    window = [2 * H, 7 * 24 * H][seed % 2]  # a short window prunes a lot
    config = state_config(scenario, weight_window_ms=window)
    state = IncrementalState(config)
    stops = [*sorted(int(c * len(shuffled)) for c in cuts), len(shuffled)]
    done = 0
    for stop in stops:
        for event_id, event in shuffled[done:stop]:
            state.apply(event, event_id)
        done = stop
        batch = snapshot_from_frame(events_frame(shuffled[:stop]), None, config)
        assert state.snapshot() == batch
