"""Scenario TOML: shipped files load; every problem is named with file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.sim import FaultKind, load_scenario, shipped_scenarios
from devices.sim.faults import MessageFault, SlowDrain
from devices.sim.scenario import DeviceType, find_scenario
from devices.sim.timefmt import DAY_MS, format_duration, format_utc, parse_duration, parse_utc
from pledgewatch.errors import ValidationError

BASE = """
seed = 3
start = "2024-05-01T00:00:00Z"
duration = "2d"
warehouse = "wh-test"

[[skus]]
id = "coil"
unit_grams = 1000

[[bays]]
id = "a1"
gateway = "gw-1"

[[gateways]]
id = "gw-1"

[[gateways.devices]]
id = "in"
type = "rfid-in"

[[gateways.devices]]
id = "out"
type = "rfid-out"

[[gateways.devices]]
id = "cell"
type = "load-cell"
bay = "a1"

[[lots]]
id = "wr-1"
sku = "coil"
bay = "a1"
qty = 10
"""


def write(tmp_path: Path, text: str, name: str = "test.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems_of(path: Path) -> str:
    with pytest.raises(ValidationError) as info:
        load_scenario(path)
    return str(info.value)


def test_shipped_scenarios_load() -> None:
    shipped = shipped_scenarios()
    assert {"small", "faults", "clean-90d"} <= set(shipped)
    small = load_scenario(shipped["small"])
    assert len(small.gateways) == 1 and len(small.gateways[0].devices) == 4
    assert small.duration_ms == DAY_MS and not small.faults
    clean = load_scenario(shipped["clean-90d"])
    assert len(clean.gateways) == 3 and sum(len(g.devices) for g in clean.gateways) == 15
    assert all(d.heartbeat_ms == 3_600_000 for g in clean.gateways for d in g.devices)
    faults = load_scenario(shipped["faults"])
    assert {f.kind for f in faults.faults} == set(FaultKind)
    assert [f.index for f in faults.faults] == list(range(len(FaultKind)))


def test_minimal_scenario_defaults(tmp_path: Path) -> None:
    s = load_scenario(write(tmp_path, BASE))
    assert s.start_ms == parse_utc("2024-05-01T00:00:00Z") and s.end_ms == s.start_ms + 2 * DAY_MS
    assert s.gateways[0].bays == ("a1",) and s.gateways[0].stocktake_device == "in"
    assert s.gateways[0].of_type(DeviceType.LOAD_CELL)[0].bay == "a1"
    assert s.traffic.door_open_ms == 120_000 and s.load_cells.interval_ms == 900_000


def test_several_problems_each_name_file_and_key(tmp_path: Path) -> None:
    text = (
        BASE.replace("seed = 3", "seed = -1")
        .replace('"2024-05-01T00:00:00Z"', '"2024-05-01 noon"')
        .replace('type = "load-cell"\nbay = "a1"', 'type = "load-cell"\nbay = "zz"')
        .replace('sku = "coil"\nbay = "a1"', 'sku = "steel"\nbay = "a1"')
        + '\n[traffic]\narrivals_per_day = "lots"\ndoor_open = "2 minutes"\n'
        + '\n[[gateways.devices]]\nid = "in"\ntype = "laser"\ncolour = "red"\n'
    )
    message = problems_of(write(tmp_path, text, "broken.toml"))
    expected = [
        "broken.toml: seed: got -1",
        "broken.toml: start: got '2024-05-01 noon'",
        "broken.toml: gateways[0].devices[2].bay: 'zz' is not a bay of this gateway",
        "broken.toml: lots[0].sku: got 'steel'",
        "broken.toml: traffic.arrivals_per_day: got 'lots'",
        "broken.toml: traffic.door_open: got '2 minutes'",
        "broken.toml: gateways[0].devices[3].type: got 'laser'",
        "broken.toml: gateways[0].devices[3].colour: unknown key",
        "broken.toml: devices: id 'in' appears more than once",
    ]
    for part in expected:
        assert part in message, part


def test_fault_problems_name_the_fault(tmp_path: Path) -> None:
    text = (
        BASE
        + """
[[faults]]
kind = "theft"
at = "3d"
lot = "wr-9"

[[faults]]
kind = "slow-drain"
at = "1h"
bay = "b7"
grams = 10

[[faults]]
kind = "meteor"

[[faults]]
kind = "replay"
at = "1h"
gateway = "gw-1"
device = "nobody"

[[faults]]
kind = "clock-skew"
at = "1h"
device = "cell"
skew = "0s"
extra = 1
"""
    )
    message = problems_of(write(tmp_path, text, "f.toml"))
    expected = [
        "f.toml: faults[0].at: got 3d, want less than the scenario duration 2d",
        "f.toml: faults[0].lot: got 'wr-9'",
        "f.toml: faults[0].qty: missing",
        "f.toml: faults[1].bay: got 'b7', want one of the scenario's bays with a load cell",
        "f.toml: faults[1].for: missing",
        "f.toml: faults[2].kind: got 'meteor'",
        "f.toml: faults[3].device: got 'nobody', want a device of gateway 'gw-1'",
        "f.toml: faults[3].after: missing",
        "f.toml: faults[4].skew: want a non-zero offset",
        "f.toml: faults[4].extra: unknown key",
    ]
    for part in expected:
        assert part in message, part


def test_fault_specs_are_typed(tmp_path: Path) -> None:
    text = (
        BASE
        + """
[[faults]]
kind = "slow-drain"
at = "1h"
for = "5d"
bay = "a1"
grams = 500

[[faults]]
kind = "duplicate"
at = "2h"
gateway = "gw-1"
"""
    )
    s = load_scenario(write(tmp_path, text))
    drain, dup = s.faults
    assert isinstance(drain, SlowDrain) and drain.end_ms == s.end_ms  # clipped to the run
    assert isinstance(dup, MessageFault) and dup.delay_ms == 2000 and dup.device is None


def test_gateway_serving_bays_needs_portals(tmp_path: Path) -> None:
    text = BASE.replace('[[gateways.devices]]\nid = "out"\ntype = "rfid-out"\n', "")
    assert "gateways[0]: serves bays, so it needs an rfid-in and an rfid-out" in problems_of(
        write(tmp_path, text)
    )


def test_unreadable_files(tmp_path: Path) -> None:
    assert "cannot read" in problems_of(tmp_path / "missing.toml")
    assert "not valid TOML" in problems_of(write(tmp_path, "seed = = 1"))


def test_find_scenario_prefers_files(tmp_path: Path) -> None:
    assert find_scenario("small") == shipped_scenarios()["small"]
    path = write(tmp_path, BASE, "small")
    assert find_scenario(str(path)) == path


@given(st.integers(min_value=-(10**14), max_value=10**14))
def test_durations_round_trip(ms: int) -> None:
    assert parse_duration(format_duration(ms), signed=True) == ms


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_instants_round_trip(ms: int) -> None:
    assert parse_utc(format_utc(ms)) == ms
