"""Door contact driver on gpiozero's mock pins: edges, tamper loop, queue overflow."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("gpiozero")

from gpiozero import Device
from gpiozero.pins.mock import MockFactory

from devices.base import Malformed, Reading, SensorConfig
from devices.registry import build_sensor
from pledgewatch.errors import ValidationError
from pledgewatch.events import DoorState, Kind

CONTACT, TAMPER = 17, 27


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    old = Device.pin_factory
    mock = MockFactory()
    Device.pin_factory = mock
    yield mock
    mock.reset()
    Device.pin_factory = old


def door(**options: Any) -> Any:
    return build_sensor(SensorConfig("door-1", "door", "dock-1", {"pin": CONTACT, **options}))


def states(results: list[Any]) -> list[object]:
    return [r.door if r.kind is Kind.DOOR else r.kind for r in results]


def test_first_poll_reports_state_then_edges(factory: MockFactory) -> None:
    sensor = door()
    contact = factory.pin(CONTACT)
    first = sensor.poll(1_000)
    assert first == [Reading("door-1", Kind.DOOR, 1_000, bay="dock-1", door=DoorState.OPEN)]
    contact.drive_low()  # magnet on the reed switch: door closed
    contact.drive_high()
    contact.drive_low()
    edges = sensor.poll(2_000)
    sensor.close()
    assert states(edges) == [DoorState.CLOSED, DoorState.OPEN, DoorState.CLOSED]
    assert all(r.bay == "dock-1" and r.ts_ms > 1_000_000_000_000 for r in edges)


def test_closed_level_high_inverts(factory: MockFactory) -> None:
    sensor = door(closed_level="high")
    assert states(sensor.poll(1)) == [DoorState.CLOSED]  # pulled up, idle high
    factory.pin(CONTACT).drive_low()
    assert states(sensor.poll(2)) == [DoorState.OPEN]
    sensor.close()


def test_tamper_loop_open_at_start_and_when_cut(factory: MockFactory) -> None:
    sensor = door(tamper_pin=TAMPER)
    first = sensor.poll(5)  # both inputs idle high: door open, tamper loop open
    assert states(first) == [DoorState.OPEN, Kind.TAMPER]
    assert isinstance(first[1], Reading) and "GPIO27" in (first[1].reason or "")
    loop = factory.pin(TAMPER)
    loop.drive_low()  # loop intact: nothing to report
    assert sensor.poll(6) == []
    loop.drive_high()  # wire cut
    [alarm] = sensor.poll(7)
    sensor.close()
    assert isinstance(alarm, Reading) and alarm.kind is Kind.TAMPER


def test_edges_from_another_thread_are_queued(factory: MockFactory) -> None:
    sensor = door()
    sensor.poll(0)
    contact = factory.pin(CONTACT)

    def flap() -> None:
        for _ in range(50):
            contact.drive_low()
            contact.drive_high()

    worker = threading.Thread(target=flap)
    worker.start()
    worker.join()
    edges = sensor.poll(1)
    sensor.close()
    assert len(edges) == 100
    assert states(edges) == [DoorState.CLOSED, DoorState.OPEN] * 50


def test_full_queue_reports_dropped_edges(factory: MockFactory) -> None:
    sensor = door(max_queue=3)
    sensor.poll(0)
    contact = factory.pin(CONTACT)
    for _ in range(4):
        contact.drive_low()
        contact.drive_high()
    results = sensor.poll(1)
    sensor.close()
    assert len(results) == 4
    assert isinstance(results[-1], Malformed) and "5 edges dropped" in results[-1].reason


def test_options_report_every_problem() -> None:
    bad = SensorConfig("door-1", "door", None, {"pin": 5, "tamper_pin": 5, "closed_level": "up"})
    with pytest.raises(ValidationError) as info:
        build_sensor(bad)
    assert "options.closed_level" in str(info.value)
    assert "pin and tamper_pin are both 5" in str(info.value)
