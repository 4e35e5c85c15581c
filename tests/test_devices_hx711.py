"""HX711 driver against an emulated chip on gpiozero's mock pins (no hardware).

The emulator is two ``MockPin`` subclasses sharing one ``HX711Chip``: the PD_SCK pin tells the
chip about rising edges; the DOUT pin's level comes from the chip (low = ready, then one data
bit per pulse, MSB first; high after the 25th pulse). Pulses per conversion are recorded so
the gain selection (25/26/27) can be checked.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("gpiozero")

from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from devices.base import Malformed, Reading, SensorConfig
from devices.drivers.hx711 import HX711Options, to_signed
from devices.registry import build_sensor
from pledgewatch.errors import ValidationError
from pledgewatch.events import Kind

DOUT, SCK = 5, 6


class HX711Chip:
    def __init__(self) -> None:
        self.queue: collections.deque[int] = collections.deque()
        self.current = 0
        self.pulses = 0
        self.pulses_per_conversion: list[int] = []

    def dout_level(self) -> bool:
        if 1 <= self.pulses <= 24:
            return bool((self.current >> (24 - self.pulses)) & 1)
        if self.pulses >= 25:  # the driver is waiting again: the previous read is over
            self.pulses_per_conversion.append(self.pulses)
            self.pulses = 0
        return not self.queue  # low = a conversion is ready

    def pulse_counts(self) -> list[int]:
        """Pulses per conversion so far, including one the driver has just finished."""
        return self.pulses_per_conversion + ([self.pulses] if self.pulses else [])

    def rising_edge(self) -> None:
        if self.pulses == 0:
            assert self.queue, "driver clocked a chip that was not ready"
            self.current = self.queue.popleft()
        self.pulses += 1


class DoutPin(MockPin):
    def __init__(self, factory: Any, info: Any, chip: HX711Chip) -> None:
        self.chip = chip
        super().__init__(factory, info)

    def _get_state(self) -> bool:
        return self.chip.dout_level()


class SckPin(MockPin):
    def __init__(self, factory: Any, info: Any, chip: HX711Chip) -> None:
        self.chip = chip
        super().__init__(factory, info)

    def _change_state(self, value: bool) -> bool:
        changed: bool = super()._change_state(value)
        if changed and value:
            self.chip.rising_edge()
        return changed


@pytest.fixture
def chip() -> Iterator[HX711Chip]:
    old = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    emulated = HX711Chip()
    factory.pin(DOUT, pin_class=DoutPin, chip=emulated)
    factory.pin(SCK, pin_class=SckPin, chip=emulated)
    yield emulated
    factory.reset()
    Device.pin_factory = old


def config(**options: Any) -> SensorConfig:
    base: dict[str, Any] = {"dout_pin": DOUT, "sck_pin": SCK, "interval_ms": 0}
    return SensorConfig("cell-a1", "hx711", "a1", {**base, **options})


def test_median_of_samples_in_integer_grams(chip: HX711Chip) -> None:
    chip.queue.extend([100, 300, 200])
    sensor = build_sensor(config(samples=3, offset=50, scale_num=3, scale_den=2))
    results = sensor.poll(1_000)
    sensor.close()
    assert results == [Reading("cell-a1", Kind.WEIGHT, 1_000, bay="a1", grams=225)]
    assert chip.pulse_counts() == [25, 25, 25]


def test_negative_readings_are_twos_complement(chip: HX711Chip) -> None:
    chip.queue.extend([0xFFFFFF, 0x800001, 0xFFFF00])
    sensor = build_sensor(config(samples=3))
    [reading] = sensor.poll(5)
    sensor.close()
    assert isinstance(reading, Reading)
    assert reading.grams == -256  # median of -1, -8388607, -256
    assert to_signed(0x800001) == -8_388_607


@pytest.mark.parametrize(("gain", "pulses"), [(32, 26), (64, 27)])
def test_gain_pulses_and_first_conversion_discarded(
    chip: HX711Chip, gain: int, pulses: int
) -> None:
    chip.queue.extend([999_999, 10, 20, 30])  # the first is still at gain 128: thrown away
    sensor = build_sensor(config(gain=gain, samples=3))
    [reading] = sensor.poll(0)
    sensor.close()
    assert isinstance(reading, Reading) and reading.grams == 20
    assert chip.pulse_counts() == [pulses] * 4


@pytest.mark.parametrize("raw", [0x7FFFFF, 0x800000])
def test_saturated_adc_is_malformed(chip: HX711Chip, raw: int) -> None:
    chip.queue.extend([10, raw, 12])
    sensor = build_sensor(config(samples=3))
    [result] = sensor.poll(0)
    sensor.close()
    assert isinstance(result, Malformed)
    assert "saturated in 1 of 3" in result.reason and f"0x{raw:06x}" in result.reason


def test_dout_stuck_high_is_malformed_not_an_exception(chip: HX711Chip) -> None:
    sensor = build_sensor(config(ready_timeout_ms=20))  # nothing queued: DOUT stays high
    [result] = sensor.poll(0)
    sensor.close()
    assert isinstance(result, Malformed)
    assert "not ready within 20 ms" in result.reason


def test_reads_once_per_interval(chip: HX711Chip) -> None:
    chip.queue.extend([1, 2])
    sensor = build_sensor(config(samples=1, interval_ms=1000))
    assert len(sensor.poll(10_000)) == 1
    assert sensor.poll(10_999) == []
    assert len(sensor.poll(11_000)) == 1
    sensor.close()


def test_options_report_every_problem() -> None:
    bad = SensorConfig(
        "cell-a1",
        "hx711",
        None,
        {"sck_pin": 6, "gain": 100, "samples": 0, "scale_den": 0, "gian": 1},
    )
    with pytest.raises(ValidationError) as info:
        HX711Options.parse(bad)
    message = str(info.value)
    for part in (
        "options.dout_pin: missing",
        "options.gain: got 100",
        "options.samples: got 0",
        "options.scale_den: got 0",
        "options.gian: unknown key",
        "bay: required",
    ):
        assert part in message
