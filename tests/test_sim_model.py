"""The warehouse model: determinism, a clean 90-day run, and each reading-level fault's effect.

Reading-level faults are checked by difference: the same scenario with and without one fault
(same seed, so the same traffic and noise) must differ in exactly what the fault describes.
"""

from __future__ import annotations

import collections
import dataclasses
from functools import cache

import pytest

from devices.sim import FaultLevel, Scenario, SimReading, find_scenario, load_scenario, simulate
from devices.sim.faults import ClockSkew, Dropout, SlowDrain, TamperAlarm, Theft
from devices.sim.timefmt import DAY_MS, HOUR_MS, MINUTE_MS
from pledgewatch.errors import ValidationError
from pledgewatch.events import DoorState, Kind


@cache
def shipped(name: str) -> Scenario:
    return load_scenario(find_scenario(name))


def run(scenario: Scenario, gateway: str | None = None) -> list[SimReading]:
    return list(simulate(scenario, gateway))


def without(scenario: Scenario, index: int) -> Scenario:
    return dataclasses.replace(
        scenario, faults=tuple(f for f in scenario.faults if f.index != index)
    )


def fault(scenario: Scenario, kind: type) -> object:
    return next(f for f in scenario.faults if isinstance(f, kind))


def test_same_seed_same_readings_different_seed_different() -> None:
    small = shipped("small")
    first = run(small)
    assert first == run(small)
    other = run(dataclasses.replace(small, seed=small.seed + 1))
    assert [r.reading for r in other] != [r.reading for r in first]
    assert len(first) > 150


def test_readings_come_in_time_order_per_gateway_subset() -> None:
    readings = run(shipped("faults"))
    assert [r.at_ms for r in readings] == sorted(r.at_ms for r in readings)
    only_b = run(shipped("faults"), "gw-b")
    assert only_b == [r for r in readings if r.gateway == "gw-b"]


def test_clean_90_days_completes_with_expected_counts() -> None:
    s = shipped("clean-90d")
    counts = collections.Counter(r.reading.kind for r in simulate(s))
    hours, quarter_hours = 90 * 24, 90 * 24 * 4
    assert counts[Kind.HEARTBEAT] == 15 * hours
    assert counts[Kind.WEIGHT] == 6 * quarter_hours
    assert counts[Kind.DOOR] == 2 * (counts[Kind.LOAD] + counts[Kind.UNLOAD])
    assert 90 * 10 <= counts[Kind.LOAD] <= 90 * 12 and 90 * 5 <= counts[Kind.UNLOAD] <= 90 * 10
    assert counts[Kind.COUNT] >= 90 * 12
    assert counts[Kind.TAMPER] == 0


def test_clean_90_days_keeps_the_books() -> None:
    s = shipped("clean-90d")
    readings = run(s)
    assert all(not r.faults and r.reading.ts_ms == r.at_ms for r in readings)
    pledged = {lot.id for lot in s.lots if lot.pledged}
    assert all(
        r.reading.release
        for r in readings
        if r.reading.kind is Kind.UNLOAD and r.reading.lot in pledged
    )
    check_books(s, readings)


def test_clean_run_has_no_fault_effects() -> None:
    s = shipped("small")
    s = dataclasses.replace(s, duration_ms=7 * DAY_MS)
    readings = run(s)
    assert all(not r.faults and r.reading.ts_ms == r.at_ms for r in readings)
    assert not any(r.reading.kind is Kind.TAMPER for r in readings)
    pledged = {lot.id for lot in s.lots if lot.pledged}
    unloads = [r.reading for r in readings if r.reading.kind is Kind.UNLOAD]
    assert unloads and all(u.release for u in unloads if u.lot in pledged)
    assert any(u.lot in pledged for u in unloads)
    beats = collections.defaultdict(list)
    for r in readings:
        if r.reading.kind is Kind.HEARTBEAT:
            beats[r.reading.device].append(r.at_ms)
    for times in beats.values():
        assert times == list(range(s.start_ms, s.end_ms, HOUR_MS))
    check_books(s, readings)


def check_books(s: Scenario, readings: list[SimReading]) -> None:
    """COUNTs equal the book (opening stocktake + LOAD − UNLOAD); WEIGHT equals the book's
    grams within noise and drift; doors alternate, and goods pass only while a door is open."""
    unit = {sku.id: sku.unit_grams for sku in s.skus}
    book: dict[str, int] = {}
    bay_grams: collections.Counter[str] = collections.Counter()
    doors: dict[str, DoorState] = {}
    cells = s.load_cells
    tolerance = cells.noise_grams + abs(cells.drift_grams_per_day) * s.duration_ms // DAY_MS
    for item in readings:
        r = item.reading
        if r.kind is Kind.COUNT and r.lot and r.sku and r.bay and r.qty is not None:
            if item.at_ms == s.start_ms:
                book[r.lot] = r.qty
                bay_grams[r.bay] += r.qty * unit[r.sku]
            assert book.get(r.lot, 0) == r.qty, r
        elif r.kind in (Kind.LOAD, Kind.UNLOAD) and r.lot and r.qty and r.bay and r.sku:
            assert DoorState.OPEN in doors.values()
            delta = r.qty if r.kind is Kind.LOAD else -r.qty
            book[r.lot] = book.get(r.lot, 0) + delta
            bay_grams[r.bay] += delta * unit[r.sku]
            assert book[r.lot] >= 0
        elif r.kind is Kind.DOOR and r.door is not None:
            assert doors.get(r.device) is not r.door
            doors[r.device] = r.door
        elif r.kind is Kind.WEIGHT and r.grams is not None and r.bay is not None:
            assert abs(r.grams - bay_grams[r.bay]) <= tolerance, (item.at_ms, r)


def test_theft_is_the_one_unload_without_release_of_a_pledged_lot() -> None:
    s = shipped("faults")
    theft = fault(s, Theft)
    assert isinstance(theft, Theft)
    pledged = {lot.id for lot in s.lots if lot.pledged}

    def unreleased(readings: list[SimReading]) -> list[SimReading]:
        return [
            r
            for r in readings
            if r.reading.kind is Kind.UNLOAD and r.reading.lot in pledged and not r.reading.release
        ]

    [stolen] = unreleased(run(s))
    assert stolen.faults == (theft.index,)
    assert (stolen.reading.lot, stolen.reading.qty) == (theft.lot, theft.qty)
    assert theft.start_ms <= stolen.at_ms < theft.start_ms + HOUR_MS
    assert unreleased(run(without(s, theft.index))) == []


def diff(s: Scenario, index: int) -> tuple[list[SimReading], list[SimReading]]:
    """(readings only with the fault, readings only without it), matched on (at, device, kind)."""
    with_fault, clean = run(s), run(without(s, index))
    key = lambda r: (r.at_ms, r.reading.device, r.reading.kind, r.reading.lot)  # noqa: E731
    clean_by = {key(r): r for r in clean}
    faulty_by = {key(r): r for r in with_fault}
    only_with = [r for r in with_fault if clean_by.get(key(r)) != r]
    only_without = [r for r in clean if key(r) not in faulty_by]
    return only_with, only_without


def test_slow_drain_lowers_only_its_bay_by_the_drained_share() -> None:
    s = shipped("faults")
    drain = fault(s, SlowDrain)
    assert isinstance(drain, SlowDrain)
    changed, missing = diff(s, drain.index)
    assert missing == []
    clean = {
        (r.at_ms, r.reading.device): r.reading.grams
        for r in run(without(s, drain.index))
        if r.reading.kind is Kind.WEIGHT
    }
    assert changed and all(r.reading.device == drain_cell(s, drain) for r in changed)
    for r in changed:
        elapsed = min(r.at_ms, drain.end_ms) - drain.start_ms
        lost = drain.grams * elapsed // (drain.end_ms - drain.start_ms)
        assert clean[(r.at_ms, r.reading.device)] - r.reading.grams == lost  # type: ignore[operator]
        in_window = drain.start_ms <= r.at_ms < drain.end_ms
        assert r.faults == ((drain.index,) if in_window else ())
    assert sum(1 for r in changed if r.faults) == (drain.end_ms - drain.start_ms) // (
        15 * MINUTE_MS
    )


def drain_cell(s: Scenario, drain: SlowDrain) -> str:
    return next(d.id for g in s.gateways for d in g.devices if d.bay == drain.bay)


def test_dropout_silences_exactly_its_device_and_window() -> None:
    s = shipped("faults")
    drop = fault(s, Dropout)
    assert isinstance(drop, Dropout)
    changed, missing = diff(s, drop.index)
    assert changed == []
    assert missing and all(
        r.reading.device == drop.device and drop.start_ms <= r.at_ms < drop.end_ms for r in missing
    )
    kinds = {r.reading.kind for r in missing}
    assert kinds == {Kind.WEIGHT, Kind.HEARTBEAT}


def test_clock_skew_offsets_exactly_its_device_and_window() -> None:
    s = shipped("faults")
    skew = fault(s, ClockSkew)
    assert isinstance(skew, ClockSkew)
    changed, missing = diff(s, skew.index)
    assert missing == [] and changed
    for r in changed:
        assert r.reading.device == skew.device and skew.start_ms <= r.at_ms < skew.end_ms
        assert r.reading.ts_ms == r.at_ms + skew.skew_ms and r.faults == (skew.index,)


def test_tamper_alarm_is_the_only_tamper() -> None:
    s = shipped("faults")
    alarm = fault(s, TamperAlarm)
    assert isinstance(alarm, TamperAlarm)
    changed, missing = diff(s, alarm.index)
    assert missing == []
    [tamper] = changed
    assert tamper.reading.kind is Kind.TAMPER and tamper.reading.device == alarm.device
    assert tamper.at_ms == alarm.start_ms and tamper.reading.reason == alarm.reason
    assert tamper.faults == (alarm.index,)
    assert [r for r in run(s) if r.reading.kind is Kind.TAMPER] == [tamper]


def test_delivery_faults_do_not_change_readings() -> None:
    s = shipped("faults")
    reading_only = dataclasses.replace(
        s, faults=tuple(f for f in s.faults if f.kind.level is FaultLevel.READING)
    )
    assert run(s) == run(reading_only)


def test_theft_that_finds_no_stock_is_an_error() -> None:
    s = shipped("faults")
    theft = fault(s, Theft)
    assert isinstance(theft, Theft)
    everything = dataclasses.replace(theft, qty=10**9)
    again = dataclasses.replace(theft, index=99, start_ms=theft.start_ms + HOUR_MS)
    with pytest.raises(ValidationError, match=r"faults\[99\]: lot wr-a-0001 has no stock left"):
        run(dataclasses.replace(s, faults=(everything, again)))
