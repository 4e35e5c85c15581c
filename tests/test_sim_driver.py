"""The ``sim`` sensor driver: paced by speed, batched, same readings as the model."""

from __future__ import annotations

from devices.base import Reading, SensorConfig
from devices.registry import build_sensor
from devices.sim import find_scenario, load_scenario, simulate
from devices.sim.driver import SimSensor
from devices.sim.timefmt import HOUR_MS
from pledgewatch.events import Kind


def sim(**options: object) -> SimSensor:
    sensor = build_sensor(
        SensorConfig("sim-1", "sim", None, {"scenario": "faults", "gateway": "gw-a", **options})
    )
    assert isinstance(sensor, SimSensor)
    return sensor


def test_speed_paces_simulated_time_against_wall_time() -> None:
    scenario = load_scenario(find_scenario("faults"))
    sensor = sim(speed=3600)  # one simulated hour per wall second
    wall = 1_700_000_000_000
    first = sensor.poll(wall)
    assert first and all(isinstance(r, Reading) and r.ts_ms == scenario.start_ms for r in first)
    assert sensor.poll(wall + 500) and sensor.sim_time(wall + 1000) == scenario.start_ms + HOUR_MS
    later = sensor.poll(wall + 1000)
    assert later and all(
        isinstance(r, Reading) and r.ts_ms <= scenario.start_ms + HOUR_MS for r in later
    )
    sensor.close()


def test_as_fast_as_possible_in_batches_equals_the_model() -> None:
    scenario = load_scenario(find_scenario("faults"))
    sensor = sim(speed=0, batch=100)
    polled: list[object] = []
    while not sensor.exhausted:
        batch = sensor.poll(0)
        assert len(batch) <= 100
        polled.extend(batch)
    assert polled == [r.reading for r in simulate(scenario, "gw-a")]
    assert any(isinstance(r, Reading) and r.kind is Kind.TAMPER for r in polled)
    assert sensor.poll(1) == []


def test_unknown_gateway_names_the_scenario_gateways() -> None:
    import pytest

    from pledgewatch.errors import ValidationError

    with pytest.raises(ValidationError, match=r"gateway 'gw-z' not in \(gw-a, gw-b\)"):
        sim(gateway="gw-z")
