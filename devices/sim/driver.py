"""The ``sim`` sensor driver: one gateway's simulated readings, paced against the wall clock.

Options: ``scenario`` (a TOML path, or a shipped scenario name), ``gateway`` (its id in the
scenario), ``speed`` (simulated ms per wall ms; 0 = as fast as the gateway polls) and
``batch`` (most readings per poll). The first poll pins the scenario start to that wall time;
each poll then returns the readings whose simulated instant has come. Reading-level faults
are applied; delivery-level faults are not (the real gateway does delivery). The readings
carry the scenario's device ids and timestamps, and their own heartbeats.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from devices.base import PollResult, SensorConfig
from devices.drivers.common import check_bay, option_fields, raise_problems
from devices.sim.model import SimReading, simulate
from devices.sim.scenario import Scenario, find_scenario, load_scenario


@dataclass(frozen=True, slots=True)
class SimOptions:
    scenario: str
    gateway: str
    speed: int
    batch: int

    @classmethod
    def parse(cls, config: SensorConfig) -> SimOptions:
        problems: list[str] = []
        f = option_fields(config, problems)
        options = cls(
            scenario=f.text("scenario"),
            gateway=f.text("gateway"),
            speed=f.integer("speed", 1, low=0, high=10**9),
            batch=f.integer("batch", 500, low=1, high=100_000),
        )
        f.finish()
        check_bay(config, problems, required=False)
        raise_problems(config, problems)
        return options


class SimSensor:
    """Replays one gateway of a scenario. The constructor does no I/O and no simulation."""

    def __init__(
        self, device: str, scenario: Scenario, gateway: str, speed: int, batch: int
    ) -> None:
        scenario.gateway(gateway)  # raises ValidationError naming the scenario's gateways
        self._device = device
        self._scenario = scenario
        self._gateway = gateway
        self._speed = speed
        self._batch = batch
        self._readings: Iterator[SimReading] | None = None
        self._next: SimReading | None = None
        self._wall_start = 0
        self._exhausted = False

    @classmethod
    def from_config(cls, config: SensorConfig) -> SimSensor:
        options = SimOptions.parse(config)
        scenario = load_scenario(find_scenario(options.scenario))
        return cls(config.device, scenario, options.gateway, options.speed, options.batch)

    @property
    def device_id(self) -> str:
        return self._device

    @property
    def exhausted(self) -> bool:
        """True once every reading of the scenario has been returned."""
        return self._exhausted

    def sim_time(self, now_ms: int) -> int:
        """The simulated instant that wall time ``now_ms`` stands for (after the first poll)."""
        if self._speed == 0:
            return self._scenario.end_ms
        return self._scenario.start_ms + (now_ms - self._wall_start) * self._speed

    def poll(self, now_ms: int) -> list[PollResult]:
        if self._readings is None:
            self._readings = simulate(self._scenario, self._gateway)
            self._wall_start = now_ms
        due = self.sim_time(now_ms)
        out: list[PollResult] = []
        while len(out) < self._batch:
            if self._next is None:
                self._next = next(self._readings, None)
                if self._next is None:
                    self._exhausted = True
                    break
            if self._next.at_ms > due:
                break
            out.append(self._next.reading)
            self._next = None
        return out

    def close(self) -> None:
        self._readings = None
        self._next = None
