"""HX711 24-bit load-cell ADC, bit-banged over two GPIO lines with gpiozero.

The chip's serial protocol (datasheet, "Serial Interface"):

* DOUT high means "no conversion ready"; DOUT low means a conversion is ready.
* Each rising edge of PD_SCK shifts the next bit out on DOUT, most significant bit first;
  24 pulses read the 24-bit two's-complement result.
* 1–3 further pulses choose channel and gain for the *next* conversion:
  25 pulses = channel A gain 128, 26 = channel B gain 32, 27 = channel A gain 64.
  After power-up the chip converts at gain 128, so with another gain the first conversion
  after opening is read and thrown away.
* PD_SCK held high for more than 60 µs powers the chip down, so the clock pin is driven
  through the pin object directly, not through gpiozero's slower device layer.

Saturated results (0x7FFFFF, 0x800000) mean an over-range or broken bridge, and a DOUT that
never goes low means a dead chip or broken wire: both become ``Malformed``, never an exception.
A poll reads ``samples`` conversions and reports the median, converted to integer grams::

    grams = (median - offset) * scale_num // scale_den
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devices.base import Malformed, PollResult, Reading, SensorConfig
from devices.drivers.common import (
    SensorOpenError,
    check_bay,
    option_fields,
    raise_problems,
)
from pledgewatch.events import Kind

PULSES_FOR_GAIN = {128: 25, 32: 26, 64: 27}
POWER_ON_GAIN = 128
DATA_BITS = 24
SATURATED_HIGH = 0x7FFFFF
SATURATED_LOW = 0x800000
_SIGN_BIT = 1 << (DATA_BITS - 1)
_READY_POLL_S = 0.0005


@dataclass(frozen=True, slots=True)
class HX711Options:
    dout_pin: int
    sck_pin: int
    gain: int
    samples: int
    offset: int
    scale_num: int
    scale_den: int
    interval_ms: int
    ready_timeout_ms: int

    @classmethod
    def parse(cls, config: SensorConfig) -> HX711Options:
        """Check the options table; raise one ``ValidationError`` naming every problem."""
        problems: list[str] = []
        f = option_fields(config, problems)
        options = cls(
            dout_pin=f.integer("dout_pin", low=0, high=63),
            sck_pin=f.integer("sck_pin", low=0, high=63),
            gain=f.integer("gain", 128, low=1, high=128),
            samples=f.integer("samples", 5, low=1, high=101),
            offset=f.integer("offset", 0, low=-(2**23), high=2**23),
            scale_num=f.integer("scale_num", 1, low=-(2**31), high=2**31),
            scale_den=f.integer("scale_den", 1, low=1, high=2**31),
            interval_ms=f.integer("interval_ms", 1000, low=0, high=86_400_000),
            ready_timeout_ms=f.integer("ready_timeout_ms", 500, low=1, high=10_000),
        )
        f.finish()
        check_bay(config, problems, required=True)
        if options.gain not in PULSES_FOR_GAIN:
            problems.append(f"options.gain: got {options.gain}, want one of 128, 64, 32")
        if options.scale_num == 0:
            problems.append("options.scale_num: got 0, want a non-zero ratio numerator")
        both = "dout_pin" in config.options and "sck_pin" in config.options
        if both and options.dout_pin == options.sck_pin:
            problems.append(f"options: dout_pin and sck_pin are both {options.dout_pin}")
        raise_problems(config, problems)
        return options


@dataclass(frozen=True, slots=True)
class _NotReady:
    waited_ms: int


def to_signed(raw: int) -> int:
    """24-bit two's complement to a Python int."""
    return raw - (1 << DATA_BITS) if raw & _SIGN_BIT else raw


class HX711Sensor:
    """One load cell (one bay). ``read_dout()`` is the DOUT level; ``set_sck(level)`` drives
    PD_SCK. The constructor does no I/O; ``from_config`` opens the pins."""

    def __init__(
        self,
        device: str,
        bay: str,
        options: HX711Options,
        *,
        read_dout: Callable[[], bool],
        set_sck: Callable[[bool], None],
        close: Callable[[], None] = lambda: None,
    ) -> None:
        self._device = device
        self._bay = bay
        self._options = options
        self._read_dout = read_dout
        self._set_sck = set_sck
        self._close = close
        self._primed = options.gain == POWER_ON_GAIN
        self._next_due: int | None = None

    @classmethod
    def from_config(cls, config: SensorConfig) -> HX711Sensor:
        options = HX711Options.parse(config)
        assert config.bay is not None  # checked by parse
        try:
            from gpiozero import DigitalInputDevice, DigitalOutputDevice, GPIOZeroError
        except ImportError:
            raise SensorOpenError("hx711 needs gpiozero: install pledgewatch[hardware]") from None
        devices: list[Any] = []
        try:
            # Pull-up: a disconnected DOUT reads high ("never ready"), not a stream of zeros.
            devices.append(DigitalInputDevice(options.dout_pin, pull_up=True))
            devices.append(DigitalOutputDevice(options.sck_pin, initial_value=False))
        except (GPIOZeroError, OSError, RuntimeError) as exc:
            for device in devices:
                device.close()
            raise SensorOpenError(f"hx711: cannot open GPIO pins: {exc}") from None
        dout_pin, sck_pin = devices[0].pin, devices[1].pin

        def set_sck(level: bool) -> None:
            sck_pin.state = level

        def close() -> None:
            for device in devices:
                device.close()

        return cls(
            config.device,
            config.bay,
            options,
            read_dout=lambda: bool(dout_pin.state),
            set_sck=set_sck,
            close=close,
        )

    @property
    def device_id(self) -> str:
        return self._device

    def poll(self, now_ms: int) -> list[PollResult]:
        """One WEIGHT reading every ``interval_ms`` (blocks for ``samples`` conversions)."""
        if self._next_due is not None and now_ms < self._next_due:
            return []
        self._next_due = now_ms + self._options.interval_ms
        if not self._primed:
            first = self._read_conversion()
            if isinstance(first, _NotReady):
                return [self._not_ready(first)]
            self._primed = True
        return [self._measure(now_ms)]

    def close(self) -> None:
        self._close()

    def _measure(self, now_ms: int) -> PollResult:
        values: list[int] = []
        for _ in range(self._options.samples):
            raw = self._read_conversion()
            if isinstance(raw, _NotReady):
                return self._not_ready(raw)
            values.append(raw)
        saturated = [v for v in values if v in (SATURATED_HIGH, SATURATED_LOW)]
        if saturated:
            return Malformed(
                self._device,
                f"ADC saturated in {len(saturated)} of {len(values)} samples "
                f"(0x{saturated[0]:06x}): load cell over range or bridge wire broken",
                " ".join(f"0x{v:06x}" for v in values),
            )
        median = statistics.median_low(to_signed(v) for v in values)
        o = self._options
        grams = (median - o.offset) * o.scale_num // o.scale_den
        return Reading(self._device, Kind.WEIGHT, now_ms, bay=self._bay, grams=grams)

    def _not_ready(self, result: _NotReady) -> Malformed:
        return Malformed(
            self._device,
            f"HX711 not ready within {result.waited_ms} ms (DOUT stuck high: chip unpowered "
            "or DOUT wire broken)",
            "",
        )

    def _read_conversion(self) -> int | _NotReady:
        """Wait for DOUT low, clock out 24 bits, then the gain pulses; the raw 24-bit value."""
        timeout_s = self._options.ready_timeout_ms / 1000
        deadline = time.monotonic() + timeout_s
        while self._read_dout():
            if time.monotonic() >= deadline:
                return _NotReady(self._options.ready_timeout_ms)
            time.sleep(_READY_POLL_S)
        value = 0
        for _ in range(DATA_BITS):
            self._set_sck(True)
            value = (value << 1) | self._read_dout()
            self._set_sck(False)
        for _ in range(PULSES_FOR_GAIN[self._options.gain] - DATA_BITS):
            self._set_sck(True)
            self._set_sck(False)
        return value
