"""Seeded, deterministic warehouse simulator with fault injection.

Same seed and scenario, same bytes: nothing here reads the wall clock or an unseeded random
source. ``scenario`` parses TOML; ``model.simulate`` yields readings; ``stream.WireStream``
yields signed wire messages plus the ground truth of every injected fault; ``driver`` is the
``sim`` sensor for a gateway; ``command`` is ``pledgewatch simulate``.
"""

from __future__ import annotations

from devices.sim.faults import FaultKind, FaultLevel
from devices.sim.model import SimReading, simulate
from devices.sim.scenario import Scenario, find_scenario, load_scenario, shipped_scenarios
from devices.sim.stream import FaultRecord, SimMessage, WireStream

__all__ = [
    "FaultKind",
    "FaultLevel",
    "FaultRecord",
    "Scenario",
    "SimMessage",
    "SimReading",
    "WireStream",
    "find_scenario",
    "load_scenario",
    "shipped_scenarios",
    "simulate",
]
