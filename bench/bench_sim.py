"""How fast the simulator runs a 90-day warehouse. Prints figures; never fails on a timing.

    .venv/bin/python bench/bench_sim.py [--scenario clean-90d] [--stream]

Each figure is printed beside a floor measured in the same run on the same machine:
readings against the cost of merely constructing as many ``Reading`` objects, and (with
``--stream``) the wire stream against the cost of merely signing as many events.
"""

from __future__ import annotations

import argparse
import time

from devices.base import Reading
from devices.sim import WireStream, find_scenario, load_scenario, simulate
from devices.sim.seeding import derive_key
from pledgewatch.events import Kind
from pledgewatch.signing import sign_event


def _seconds(fn: object) -> tuple[float, int]:
    start = time.perf_counter()
    count = fn()  # type: ignore[operator]
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="clean-90d")
    parser.add_argument("--stream", action="store_true", help="also sign the whole wire stream")
    args = parser.parse_args()
    scenario = load_scenario(find_scenario(args.scenario))
    devices = sum(len(g.devices) for g in scenario.gateways)
    days = scenario.duration_ms / 86_400_000
    gateways = len(scenario.gateways)
    print(f"scenario {scenario.name}: {days:g} days, {gateways} gateways, {devices} devices")

    elapsed, n = _seconds(lambda: sum(1 for _ in simulate(scenario)))
    floor, _ = _seconds(lambda: sum(1 for i in range(n) if Reading("d", Kind.HEARTBEAT, i)))
    print(
        f"readings   {n:>8} in {elapsed:6.2f} s  {n / elapsed:>9.0f}/s  "
        f"{elapsed / floor:5.1f}x the cost of constructing them  "
        f"{scenario.duration_ms / (elapsed * 1000):,.0f}x real time"
    )
    if not args.stream:
        return
    elapsed, n = _seconds(lambda: sum(1 for _ in WireStream(scenario)))
    key = derive_key(0, "bench")
    event = Reading("d", Kind.HEARTBEAT, 0).to_event("w", "g", 1, "0" * 64)
    floor, _ = _seconds(lambda: sum(1 for _ in range(n) if sign_event(event, key)))
    print(
        f"messages   {n:>8} in {elapsed:6.2f} s  {n / elapsed:>9.0f}/s  "
        f"{elapsed / floor:5.1f}x the cost of signing them"
    )


if __name__ == "__main__":
    main()
