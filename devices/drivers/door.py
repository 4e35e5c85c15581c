"""Door contact (reed switch) on a GPIO pin, with an optional tamper loop on a second pin.

Both inputs use the Pi's internal pull-up, so a closed switch reads low ("pressed" in
gpiozero's words). ``closed_level`` says which level means the door is closed: ``low`` for a
normally-open reed switch that the magnet closes (the usual case), ``high`` for the opposite.
The tamper loop is a normally-closed wire to ground: low while intact; when it reads high
(cut, or the sensor pried off) the driver reports a TAMPER reading.

gpiozero calls the edge callbacks on its own thread; edges are stamped with the wall clock
when they happen and queued under a lock (at most ``max_queue``; further edges are counted and
reported as one ``Malformed``). The first poll attaches the callbacks, then reports the
current door state (and an open tamper loop), so every log starts from a known state.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from devices.base import Malformed, PollResult, Reading, SensorConfig
from devices.drivers.common import (
    SensorOpenError,
    check_bay,
    option_fields,
    raise_problems,
    wall_ms,
)
from pledgewatch.events import DoorState, Kind


@dataclass(frozen=True, slots=True)
class DoorOptions:
    pin: int
    closed_when_low: bool
    bounce_ms: int
    tamper_pin: int | None
    max_queue: int

    @classmethod
    def parse(cls, config: SensorConfig) -> DoorOptions:
        problems: list[str] = []
        f = option_fields(config, problems)
        tamper = f.integer("tamper_pin", low=0, high=63) if "tamper_pin" in config.options else None
        options = cls(
            pin=f.integer("pin", low=0, high=63),
            closed_when_low=f.choice("closed_level", ("low", "high"), "low") == "low",
            bounce_ms=f.integer("bounce_ms", 50, low=0, high=10_000),
            tamper_pin=tamper,
            max_queue=f.integer("max_queue", 1000, low=1, high=1_000_000),
        )
        f.finish()
        check_bay(config, problems, required=False)
        if tamper is not None and "pin" in config.options and tamper == options.pin:
            problems.append(f"options: pin and tamper_pin are both {tamper}")
        raise_problems(config, problems)
        return options


class Contact(Protocol):
    """The part of ``gpiozero.Button`` the driver uses."""

    @property
    def is_pressed(self) -> bool: ...

    when_pressed: Callable[[], None] | None
    when_released: Callable[[], None] | None

    def close(self) -> None: ...


class DoorSensor:
    """Door contact readings (``Kind.DOOR``) and tamper-loop alarms (``Kind.TAMPER``)."""

    def __init__(
        self,
        device: str,
        bay: str | None,
        options: DoorOptions,
        contact: Contact,
        *,
        tamper: Contact | None = None,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        self._device = device
        self._bay = bay
        self._options = options
        self._contact = contact
        self._tamper = tamper
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._queue: collections.deque[Reading] = collections.deque()
        self._dropped = 0
        self._attached = False

    @classmethod
    def from_config(cls, config: SensorConfig) -> DoorSensor:
        options = DoorOptions.parse(config)
        try:
            from gpiozero import Button, GPIOZeroError
        except ImportError:
            raise SensorOpenError("door needs gpiozero: install pledgewatch[hardware]") from None
        bounce = options.bounce_ms / 1000 if options.bounce_ms else None
        opened: list[Any] = []
        try:
            opened.append(Button(options.pin, pull_up=True, bounce_time=bounce))
            if options.tamper_pin is not None:
                opened.append(Button(options.tamper_pin, pull_up=True, bounce_time=bounce))
        except (GPIOZeroError, OSError, RuntimeError) as exc:
            for button in opened:
                button.close()
            raise SensorOpenError(f"door: cannot open GPIO pins: {exc}") from None
        tamper = opened[1] if len(opened) > 1 else None
        return cls(config.device, config.bay, options, opened[0], tamper=tamper)

    @property
    def device_id(self) -> str:
        return self._device

    def poll(self, now_ms: int) -> list[PollResult]:
        if not self._attached:
            self._attach(now_ms)
        with self._lock:
            out: list[PollResult] = list(self._queue)
            self._queue.clear()
            dropped, self._dropped = self._dropped, 0
        if dropped:
            reason = f"{dropped} edges dropped: queue full ({self._options.max_queue})"
            out.append(Malformed(self._device, reason, ""))
        return out

    def close(self) -> None:
        self._contact.when_pressed = None
        self._contact.when_released = None
        self._contact.close()
        if self._tamper is not None:
            self._tamper.when_released = None
            self._tamper.close()

    def _attach(self, now_ms: int) -> None:
        self._attached = True
        self._contact.when_pressed = lambda: self._door_edge(pressed=True)
        self._contact.when_released = lambda: self._door_edge(pressed=False)
        if self._tamper is not None:
            self._tamper.when_released = self._tamper_open
        state = self._door_state(self._contact.is_pressed)
        with self._lock:
            self._queue.appendleft(self._door_reading(state, now_ms))
        if self._tamper is not None and not self._tamper.is_pressed:
            self._push(self._tamper_reading(now_ms))

    def _door_state(self, pressed: bool) -> DoorState:
        return DoorState.CLOSED if pressed == self._options.closed_when_low else DoorState.OPEN

    def _door_reading(self, state: DoorState, ts_ms: int) -> Reading:
        return Reading(self._device, Kind.DOOR, ts_ms, bay=self._bay, door=state)

    def _tamper_reading(self, ts_ms: int) -> Reading:
        reason = f"tamper loop open on GPIO{self._options.tamper_pin} (wire cut or sensor removed)"
        return Reading(self._device, Kind.TAMPER, ts_ms, bay=self._bay, reason=reason)

    def _door_edge(self, *, pressed: bool) -> None:
        self._push(self._door_reading(self._door_state(pressed), self._clock_ms()))

    def _tamper_open(self) -> None:
        self._push(self._tamper_reading(self._clock_ms()))

    def _push(self, reading: Reading) -> None:
        with self._lock:
            if len(self._queue) >= self._options.max_queue:
                self._dropped += 1
            else:
                self._queue.append(reading)
