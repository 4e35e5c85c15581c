"""Readings as JSON lines from a file or a FIFO: one ``Reading.to_dict()`` object per line.

Used to replay recorded or simulated readings into a gateway, and by tests to feed garbage.
The path is opened non-blocking once; every poll reads what has been appended since (a
regular file is followed like ``tail -f``; a FIFO is read whenever a writer has written).
Lines that are not UTF-8, not JSON, not a reading, or that would not make a valid event
become ``Malformed`` with the reason. By default a line must name this sensor's device;
``any_device = true`` accepts readings for any device (a whole recorded gateway).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from devices.base import Malformed, PollResult, Reading, SensorConfig
from devices.drivers.common import (
    SensorOpenError,
    check_bay,
    clip,
    option_fields,
    raise_problems,
)
from pledgewatch.errors import ValidationError
from pledgewatch.events import ZERO_HASH

MAX_LINE = 16 * 1024
READ_CHUNK = 64 * 1024
MAX_READ_PER_POLL = 1024 * 1024
_PROBE_ID = "probe"


@dataclass(frozen=True, slots=True)
class JsonlOptions:
    path: Path
    any_device: bool

    @classmethod
    def parse(cls, config: SensorConfig) -> JsonlOptions:
        problems: list[str] = []
        f = option_fields(config, problems)
        options = cls(path=Path(f.text("path")), any_device=f.boolean("any_device", False))
        f.finish()
        check_bay(config, problems, required=False)
        raise_problems(config, problems)
        return options


def parse_line(line: bytes) -> Reading | str:
    """A reading that would make a valid event, or the reason it would not. Never raises."""
    try:
        value = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        return "line is not UTF-8"
    except (ValueError, RecursionError) as exc:
        return f"not JSON: {exc}"
    try:
        reading = Reading.from_dict(value)
        # Readings are checked exactly as the gateway's events will be; the ids are stand-ins.
        reading.to_event(_PROBE_ID, _PROBE_ID, 1, ZERO_HASH)
    except (ValidationError, TypeError, ValueError) as exc:
        return str(exc)
    return reading


class JsonlSensor:
    """Reads JSON-line readings from an open file descriptor; the constructor does no I/O."""

    def __init__(self, device: str, options: JsonlOptions, fd: int) -> None:
        self._device = device
        self._options = options
        self._fd = fd
        self._buffer = b""

    @classmethod
    def from_config(cls, config: SensorConfig) -> JsonlSensor:
        options = JsonlOptions.parse(config)
        try:
            fd = os.open(options.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise SensorOpenError(f"jsonl: cannot open {options.path}: {exc.strerror}") from None
        return cls(config.device, options, fd)

    @property
    def device_id(self) -> str:
        return self._device

    def poll(self, now_ms: int) -> list[PollResult]:
        try:
            data = self._read_available()
        except OSError as exc:
            return [Malformed(self._device, f"read error: {exc.strerror}", "")]
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        out: list[PollResult] = []
        if len(self._buffer) > MAX_LINE:
            out.append(
                Malformed(self._device, f"no newline within {MAX_LINE} bytes", clip(self._buffer))
            )
            self._buffer = b""
        for line in lines:
            if line.strip():
                out.append(self._result(line))
        return out

    def close(self) -> None:
        os.close(self._fd)

    def _read_available(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while total < MAX_READ_PER_POLL:
            try:
                chunk = os.read(self._fd, READ_CHUNK)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        return b"".join(chunks)

    def _result(self, line: bytes) -> PollResult:
        if len(line) > MAX_LINE:
            return Malformed(self._device, f"line longer than {MAX_LINE} bytes", clip(line))
        parsed = parse_line(line)
        if isinstance(parsed, str):
            return Malformed(self._device, parsed, clip(line))
        if not self._options.any_device and parsed.device != self._device:
            reason = f"reading for device {parsed.device!r}, want {self._device!r}"
            return Malformed(self._device, reason, clip(line))
        return parsed
