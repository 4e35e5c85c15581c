"""The jsonl driver: readings from a file or FIFO; every kind of garbage becomes Malformed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.base import Malformed, Reading, Sensor, SensorConfig
from devices.drivers.jsonl import parse_line
from devices.registry import build_sensor
from pledgewatch.events import DoorState, Kind

GOOD = Reading("door-1", Kind.DOOR, 1_700_000_000_000, bay="dock-1", door=DoorState.OPEN)


def line(value: object) -> bytes:
    return json.dumps(value).encode() + b"\n"


def sensor_for(path: Path, **options: object) -> Sensor:
    return build_sensor(SensorConfig("door-1", "jsonl", None, {"path": str(path), **options}))


def test_file_is_followed_like_tail(tmp_path: Path) -> None:
    path = tmp_path / "readings.jsonl"
    path.write_bytes(line(GOOD.to_dict()))
    sensor = sensor_for(path)
    assert sensor.poll(0) == [GOOD]
    assert sensor.poll(1) == []
    with path.open("ab") as fh:
        fh.write(line({**GOOD.to_dict(), "door": "CLOSED"})[:20])
    assert sensor.poll(2) == []  # half a line waits
    with path.open("ab") as fh:
        fh.write(line({**GOOD.to_dict(), "door": "CLOSED"})[20:])
    [closed] = sensor.poll(3)
    sensor.close()
    assert isinstance(closed, Reading) and closed.door is DoorState.CLOSED


def test_garbage_lines_become_malformed_with_reasons(tmp_path: Path) -> None:
    path = tmp_path / "garbage.jsonl"
    good = GOOD.to_dict()
    path.write_bytes(
        b"{not json\n"
        + line([1, 2])
        + line({**good, "kind": "TELEPORT"})
        + line({**good, "ts_ms": 1.5})
        + line({**good, "colour": "red"})
        + line({**good, "qty": 3})
        + line({**good, "device": "someone-else"})
        + b"\xff\xfe\n"
        + b"\n"
        + line(good)
    )
    sensor = sensor_for(path)
    results = sensor.poll(0)
    sensor.close()
    assert results[-1] == GOOD
    reasons = [r.reason for r in results[:-1] if isinstance(r, Malformed)]
    assert len(reasons) == 8
    assert reasons[0].startswith("not JSON")
    assert "want object" in reasons[1]
    assert "TELEPORT" in reasons[2]
    assert "ts_ms" in reasons[3]
    assert "unexpected ['colour']" in reasons[4]
    assert "qty: must be null for DOOR" in reasons[5]
    assert "someone-else" in reasons[6]
    assert reasons[7] == "line is not UTF-8"


def test_any_device_accepts_a_whole_gateway(tmp_path: Path) -> None:
    path = tmp_path / "all.jsonl"
    path.write_bytes(line({**GOOD.to_dict(), "device": "door-2"}))
    sensor = sensor_for(path, any_device=True)
    [reading] = sensor.poll(0)
    sensor.close()
    assert isinstance(reading, Reading) and reading.device == "door-2"


def test_fifo_reads_whatever_a_writer_wrote(tmp_path: Path) -> None:
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    sensor = sensor_for(fifo)  # opening never blocks, even with no writer yet
    assert sensor.poll(0) == []
    writer = os.open(fifo, os.O_WRONLY)
    os.write(writer, line(GOOD.to_dict()) + b"]]]\n")
    results = sensor.poll(1)
    os.close(writer)
    assert results[0] == GOOD and isinstance(results[1], Malformed)
    assert sensor.poll(2) == []  # writer gone: EOF, no error
    writer = os.open(fifo, os.O_WRONLY)
    os.write(writer, line(GOOD.to_dict()))
    assert sensor.poll(3) == [GOOD]
    os.close(writer)
    sensor.close()


def test_missing_file_is_an_open_error(tmp_path: Path) -> None:
    from devices.drivers.common import SensorOpenError

    with pytest.raises(SensorOpenError, match="cannot open"):
        sensor_for(tmp_path / "nope.jsonl")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_parse_line_never_raises(data: bytes) -> None:
    assert isinstance(parse_line(data), Reading | str)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from([*sorted(GOOD.to_dict()), "x"]), _json, max_size=12))
def test_reading_shaped_json_never_raises(value: dict[str, object]) -> None:
    assert isinstance(parse_line(json.dumps(value).encode()), Reading | str)
