"""Serial RFID portal driver against a real pty pair: lines written to the master side are
what the reader would send; the driver opens the slave side with pyserial."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("serial")

from devices.base import Malformed, PollResult, Reading, SensorConfig
from devices.drivers.rfid import Direction, Pallet, RfidOptions, RfidPortalSensor, load_tags
from devices.registry import build_sensor
from pledgewatch.errors import ValidationError
from pledgewatch.events import Kind

EPC_1 = "E28011606000020D6F1A2B3C"
EPC_2 = "e28011606000020d6f1a2b3d"


@dataclass
class Portal:
    sensor: RfidPortalSensor
    master: int

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def poll_until(self, now_ms: int, want: int, timeout_s: float = 2.0) -> list[PollResult]:
        """Poll (non-blocking) until ``want`` results arrived; the pty may need a moment."""
        out: list[PollResult] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < want and time.monotonic() < deadline:
            out.extend(self.sensor.poll(now_ms))
            time.sleep(0.005)
        return out


@pytest.fixture
def tags_file(tmp_path: Path) -> Path:
    path = tmp_path / "tags.csv"
    path.write_text(
        f"epc,sku,lot,qty\n{EPC_1},steel-coil-2mm,wr-0001,12\n{EPC_2},copper,wr-0002,3\n"
    )
    return path


def open_portal(tags: Path, direction: str = "in", debounce_ms: int = 3000) -> Iterator[Portal]:
    master, slave = os.openpty()
    options = {
        "port": os.ttyname(slave),
        "direction": direction,
        "tags": str(tags),
        "debounce_ms": debounce_ms,
    }
    sensor = build_sensor(SensorConfig("portal-in", "rfid-serial", "a1", options))
    assert isinstance(sensor, RfidPortalSensor)
    try:
        yield Portal(sensor, master)
    finally:
        sensor.close()
        os.close(master)
        os.close(slave)


@pytest.fixture
def portal(tags_file: Path) -> Iterator[Portal]:
    yield from open_portal(tags_file)


def test_tag_read_becomes_load_with_pallet(portal: Portal) -> None:
    portal.send(f"{EPC_1},-57\r\n".encode())
    [reading] = portal.poll_until(1_000, 1)
    assert reading == Reading(
        "portal-in", Kind.LOAD, 1_000, bay="a1", sku="steel-coil-2mm", lot="wr-0001", qty=12
    )


def test_out_portal_reports_unload(tags_file: Path) -> None:
    for portal in open_portal(tags_file, direction="out"):
        portal.send(f"{EPC_2}\n".encode())
        [reading] = portal.poll_until(5, 1)
        assert isinstance(reading, Reading) and reading.kind is Kind.UNLOAD and reading.qty == 3


def test_same_epc_within_window_is_one_movement(portal: Portal) -> None:
    portal.send(f"{EPC_1},-60\n{EPC_1},-58\n".encode())
    assert len(portal.poll_until(1_000, 2, timeout_s=0.3)) == 1
    portal.send(f"{EPC_1},-59\n".encode())
    assert portal.poll_until(3_500, 1, timeout_s=0.3) == []  # 2.5 s after the last read
    portal.send(f"{EPC_1},-59\n".encode())
    assert len(portal.poll_until(6_600, 1)) == 1  # 3.1 s after the last read: a new movement


def test_partial_line_waits_for_its_newline(portal: Portal) -> None:
    portal.send(EPC_1[:10].encode())
    assert portal.poll_until(1, 1, timeout_s=0.2) == []
    portal.send(EPC_1[10:].encode() + b"\n")
    [reading] = portal.poll_until(2, 1)
    assert isinstance(reading, Reading) and reading.lot == "wr-0001"


def test_garbage_becomes_malformed_never_an_exception(portal: Portal) -> None:
    portal.send(b"\xff\xfe\x00garbage\n")
    portal.send(b"ZZZZ0000\n")
    portal.send(b"DEADBEEFCAFE\n")
    portal.send(f"{EPC_1},loud\n".encode())
    portal.send(b"A" * 300 + b"\n")
    results = portal.poll_until(1, 5)
    assert all(isinstance(r, Malformed) for r in results)
    reasons = [r.reason for r in results if isinstance(r, Malformed)]
    assert len(reasons) == 5
    assert "not ASCII" in reasons[0]
    assert "not 8-124 hex digits" in reasons[1]
    assert "unknown EPC deadbeefcafe" in reasons[2]
    assert "RSSI 'loud'" in reasons[3]
    assert "longer than 128" in reasons[4]


def test_runaway_line_without_newline_is_dropped(portal: Portal) -> None:
    portal.send(b"E2" * 200)
    results = portal.poll_until(1, 1)
    assert isinstance(results[0], Malformed) and "no newline" in results[0].reason
    portal.send(f"\n{EPC_2}\n".encode())
    [reading] = portal.poll_until(2, 1)
    assert isinstance(reading, Reading) and reading.lot == "wr-0002"


class FakePort:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, size: int = 1) -> bytes:
        chunk, self.data = self.data[:size], self.data[size:]
        return chunk

    def close(self) -> None:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_give_readings_or_malformed(data: bytes) -> None:
    options = RfidOptions("/dev/null", 9600, Direction.IN, Path("tags.csv"), 0)
    tags = {EPC_2: Pallet("copper", "wr-0002", 3)}
    sensor = RfidPortalSensor("portal-in", "a1", options, tags, FakePort(data + b"\n"))
    for result in sensor.poll(0):
        assert isinstance(result, Reading | Malformed)


def test_tags_file_reports_every_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "tags.csv"
    path.write_text(
        f"{EPC_1},sku,lot,1\nXYZ,sku,lot,1\n{EPC_1},sku,lot,2\n{EPC_2},sku,,0\nonly,two\n"
    )
    with pytest.raises(ValidationError) as info:
        load_tags(path)
    message = str(info.value)
    assert "tags.csv:2: epc 'XYZ'" in message
    assert "tags.csv:3: epc E28011606000020D6F1A2B3C appears twice" in message
    assert "tags.csv:4: lot ''" in message and "tags.csv:4: qty '0'" in message
    assert "tags.csv:5: got 2 fields" in message


def test_options_report_every_problem() -> None:
    bad = SensorConfig("p", "rfid-serial", None, {"baudrate": 7, "direction": "sideways"})
    with pytest.raises(ValidationError) as info:
        build_sensor(bad)
    message = str(info.value)
    for part in ("options.port: missing", "options.baudrate: got 7", "options.direction", "bay"):
        assert part in message
