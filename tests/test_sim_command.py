"""``pledgewatch simulate``: JSON lines of readings or wire messages, byte-identical per seed."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from devices.base import Reading
from devices.sim import command
from pledgewatch.errors import ValidationError
from pledgewatch.events import SignedEvent


def simulate(*argv: str) -> str:
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out = io.StringIO()
    assert command.run(parser.parse_args(list(argv)), out) == 0
    return out.getvalue()


def test_readings_are_reading_dicts_and_deterministic() -> None:
    text = simulate("--scenario", "small")
    assert text == simulate("--scenario", "small")
    lines = text.splitlines()
    assert len(lines) > 150
    first = Reading.from_dict(json.loads(lines[0]))
    assert first.ts_ms == 1_709_251_200_000


def test_messages_carry_wire_text_and_fault() -> None:
    lines = simulate(
        "--scenario", "faults", "--output", "messages", "--gateway", "gw-b"
    ).splitlines()
    rows = [json.loads(line) for line in lines]
    assert {tuple(sorted(r)) for r in rows} == {("at_ms", "fault", "payload", "topic")}
    assert all(r["topic"] == "pledgewatch/v1/wh-faults/gw-b/events" for r in rows)
    SignedEvent.from_wire(rows[0]["payload"].encode())
    assert {r["fault"] for r in rows} == {None, "clock-skew", "gateway-offline", "wrong-key"}


def test_limit_stops_early() -> None:
    assert (
        len(
            simulate("--scenario", "clean-90d", "--output", "messages", "--limit", "5").splitlines()
        )
        == 5
    )
    assert simulate("--scenario", "small", "--limit", "0") == ""


def test_cli_reports_scenario_problems_with_exit_code_2(tmp_path: object) -> None:
    from pledgewatch.cli import main

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    args = parser.parse_args(["--scenario", "no-such-scenario.toml"])
    assert command.run(args, out, err) == 2
    assert "no-such-scenario.toml: cannot read" in err.getvalue() and out.getvalue() == ""
    assert main(["simulate", "--scenario", "small", "--gateway", "gw-9"]) == 2


def test_unknown_gateway_and_bad_limit() -> None:
    with pytest.raises(ValidationError, match="gw-9"):
        simulate("--scenario", "small", "--gateway", "gw-9")
    with pytest.raises(SystemExit):
        simulate("--scenario", "small", "--limit", "-2")
