"""``pledgewatch simulate``: stream a scenario's readings or wire messages as JSON lines.

    pledgewatch simulate --scenario FILE|NAME [--gateway ID] [--output readings|messages]
                         [--limit N]

``readings``: one ``Reading.to_dict()`` per line, in simulated-time order, reading-level
faults applied. ``messages``: one ``{"at_ms", "topic", "payload", "fault"}`` per line, where
``payload`` is the wire text (canonical JSON of the signed event) and ``fault`` the fault kind
that made or marked the message, or null. Keys are sorted, so output is byte-identical for
the same scenario. Exit codes: 0 done, 2 a problem with the scenario (named on ``err``).
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Iterator
from typing import TextIO

from devices.sim.model import simulate
from devices.sim.scenario import Scenario, find_scenario, load_scenario, shipped_scenarios
from devices.sim.stream import WireStream
from pledgewatch.errors import PledgewatchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    names = ", ".join(sorted(shipped_scenarios()))
    parser.add_argument(
        "--scenario", required=True, help=f"scenario TOML file, or a shipped one: {names}"
    )
    parser.add_argument("--gateway", help="only this gateway's readings or messages")
    parser.add_argument(
        "--output", choices=("readings", "messages"), default="readings", help="what to stream"
    )
    parser.add_argument("--limit", type=_count, help="stop after N lines")


def run(args: argparse.Namespace, out: TextIO, err: TextIO | None = None) -> int:
    """Stream the lines to ``out``; exit code 0, or 2 after a scenario problem.

    With ``err`` (as ``pledgewatch.cli`` passes it) a scenario problem is printed there;
    without it the ``ValidationError`` propagates to the caller.
    """
    try:
        scenario = load_scenario(find_scenario(args.scenario))
        if args.gateway is not None:
            scenario.gateway(args.gateway)
        make = _readings if args.output == "readings" else _messages
        for line in itertools.islice(make(scenario, args.gateway), args.limit):
            out.write(line)
            out.write("\n")
    except PledgewatchError as exc:
        if err is None:
            raise
        print(f"error: {exc}", file=err)
        return 2
    return 0


def _readings(scenario: Scenario, gateway: str | None) -> Iterator[str]:
    for item in simulate(scenario, gateway):
        yield _json(item.reading.to_dict())


def _messages(scenario: Scenario, gateway: str | None) -> Iterator[str]:
    for message in WireStream(scenario, gateway=gateway):
        yield _json(
            {
                "at_ms": message.at_ms,
                "topic": message.topic,
                "payload": message.payload.decode("utf-8"),
                "fault": None if message.fault is None else message.fault.value,
            }
        )


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, want a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"got {value}, want 0 or more")
    return value
