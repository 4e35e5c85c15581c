"""The driver registry: config words, every problem in one error, no hardware import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devices.base import SensorConfig
from devices.registry import DRIVERS, OPTION_PARSERS, build_sensor, config_problems
from pledgewatch.errors import PledgewatchError, ValidationError

REPO = Path(__file__).resolve().parents[1]


def test_config_words() -> None:
    assert set(DRIVERS) == {"hx711", "rfid-serial", "door", "sim", "jsonl"}
    assert set(OPTION_PARSERS) == set(DRIVERS)


def test_unknown_driver_and_bad_device_are_both_reported() -> None:
    with pytest.raises(ValidationError) as info:
        build_sensor(SensorConfig("Bad Device!", "hx712", None, {}))
    message = str(info.value)
    assert "device: got 'Bad Device!'" in message
    assert "driver: got 'hx712', want one of door, hx711, jsonl, rfid-serial, sim" in message


def test_every_option_problem_is_listed_before_any_io() -> None:
    config = SensorConfig(
        "Cell!", "hx711", "a1", {"dout_pin": 99, "sck_pin": "six", "gain": 7, "colour": "red"}
    )
    problems = config_problems(config)
    assert problems[0].startswith("device:")
    text = problems[1]
    for part in (
        "options.dout_pin: got 99",
        "options.sck_pin: got 'six'",
        "options.gain: got 7",
        "options.colour: unknown key",
    ):
        assert part in text


def test_sim_options_are_checked() -> None:
    problems = config_problems(SensorConfig("sim", "sim", None, {"speed": -1, "batch": 0}))
    text = "; ".join(problems)
    for part in (
        "options.scenario: missing",
        "options.gateway: missing",
        "options.speed: got -1",
        "options.batch: got 0",
    ):
        assert part in text


def test_registry_imports_and_works_without_hardware_libraries(tmp_path: Path) -> None:
    """On a machine without gpiozero/pyserial the registry, the file and sim drivers work and
    the hardware drivers fail with our error naming the extra to install."""
    feed = tmp_path / "feed.jsonl"
    feed.write_text("")
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["gpiozero"] = None   # import of a None entry raises ImportError
        sys.modules["serial"] = None
        from devices.base import SensorConfig
        from devices.registry import build_sensor
        from pledgewatch.errors import PledgewatchError
        assert "gpiozero" not in [m for m, v in sys.modules.items() if v is not None]
        build_sensor(SensorConfig("f", "jsonl", None, {{"path": {str(feed)!r}}})).close()
        build_sensor(SensorConfig("s", "sim", None, {{"scenario": "small", "gateway": "gw-1"}}))
        try:
            build_sensor(SensorConfig("c", "hx711", "a1", {{"dout_pin": 5, "sck_pin": 6}}))
        except PledgewatchError as exc:
            print(exc)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "install pledgewatch[hardware]" in result.stdout


def test_missing_serial_port_is_an_open_error(tmp_path: Path) -> None:
    from devices.drivers.common import SensorOpenError

    tags = tmp_path / "tags.csv"
    tags.write_text("E28011606000020D6F1A2B3C,coil,wr-1,1\n")
    options = {"port": str(tmp_path / "ttyNONE"), "direction": "in", "tags": str(tags)}
    with pytest.raises(SensorOpenError, match="cannot open"):
        build_sensor(SensorConfig("p", "rfid-serial", "a1", options))


def test_open_errors_are_pledgewatch_errors(tmp_path: Path) -> None:
    config = SensorConfig(
        "p",
        "rfid-serial",
        "a1",
        {"port": str(tmp_path / "ttyNONE"), "direction": "in", "tags": str(tmp_path)},
    )
    with pytest.raises(PledgewatchError, match="cannot read tags file"):
        build_sensor(config)
