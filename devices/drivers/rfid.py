"""UHF RFID portal reader on a serial port: each tag read becomes a LOAD or UNLOAD.

The reader writes one tag read per line, ASCII, ``\\n`` or ``\\r\\n`` terminated::

    EPC_HEX[,RSSI]          e.g. ``E28011606000020D6F1A2B3C,-57``

The tags file says which pallet each tag is on (CSV, optional header line)::

    epc,sku,lot,qty

A portal has a direction: ``in`` reports LOAD, ``out`` reports UNLOAD, into or out of the
sensor's bay. A tag sitting in the field is read many times a second, so reads of the same EPC
less than ``debounce_ms`` after its previous read are one movement (the window slides with
every read). Unknown EPCs, bad hex, non-ASCII bytes and over-long lines become ``Malformed``.
"""

from __future__ import annotations

import csv
import enum
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from devices.base import Malformed, PollResult, Reading, SensorConfig
from devices.drivers.common import (
    SensorOpenError,
    check_bay,
    clip,
    option_fields,
    raise_problems,
)
from pledgewatch.errors import ValidationError
from pledgewatch.events import MAX_TEXT, Kind

MAX_LINE = 128
READ_CHUNK = 4096
MAX_READ_PER_POLL = 64 * 1024
_EPC = re.compile(r"[0-9a-fA-F]{8,124}")
_RSSI = re.compile(r"-?[0-9]{1,4}(\.[0-9]{1,3})?")
_HEADER = ["epc", "sku", "lot", "qty"]


class Direction(enum.Enum):
    IN = "in"
    OUT = "out"

    @property
    def kind(self) -> Kind:
        return Kind.LOAD if self is Direction.IN else Kind.UNLOAD


@dataclass(frozen=True, slots=True)
class Pallet:
    """What one tag is on: ``qty`` units of ``sku`` from ``lot``."""

    sku: str
    lot: str
    qty: int


@dataclass(frozen=True, slots=True)
class RfidOptions:
    port: str
    baudrate: int
    direction: Direction
    tags: Path
    debounce_ms: int

    @classmethod
    def parse(cls, config: SensorConfig) -> RfidOptions:
        problems: list[str] = []
        f = option_fields(config, problems)
        options = cls(
            port=f.text("port"),
            baudrate=f.integer("baudrate", 115200, low=1200, high=4_000_000),
            direction=Direction(f.choice("direction", ("in", "out"))),
            tags=Path(f.text("tags")),
            debounce_ms=f.integer("debounce_ms", 3000, low=0, high=3_600_000),
        )
        f.finish()
        check_bay(config, problems, required=True)
        raise_problems(config, problems)
        return options


def load_tags(path: Path) -> dict[str, Pallet]:
    """Read the tags CSV; raise one ``ValidationError`` naming every bad line (file:line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{path}: cannot read tags file: {exc}") from None
    tags: dict[str, Pallet] = {}
    problems: list[str] = []
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or (number == 1 and [c.strip().lower() for c in row] == _HEADER):
            continue
        where = f"{path.name}:{number}"
        before = len(problems)
        if len(row) != len(_HEADER):
            problems.append(f"{where}: got {len(row)} fields, want epc,sku,lot,qty")
            continue
        epc, sku, lot, qty = (c.strip() for c in row)
        if _EPC.fullmatch(epc) is None or len(epc) % 2:
            problems.append(f"{where}: epc {epc!r}: want 8-124 hex digits, even count")
        elif epc.lower() in tags:
            problems.append(f"{where}: epc {epc} appears twice")
        for name, value in (("sku", sku), ("lot", lot)):
            if not 1 <= len(value) <= MAX_TEXT or not value.isprintable():
                problems.append(f"{where}: {name} {value!r}: want 1-{MAX_TEXT} printable chars")
        if not qty.isdigit() or int(qty) < 1:
            problems.append(f"{where}: qty {qty!r}: want an integer >= 1")
        if len(problems) == before:
            tags[epc.lower()] = Pallet(sku, lot, int(qty))
    if problems:
        raise ValidationError(f"tags file {path}: " + "; ".join(problems))
    return tags


class SerialPort(Protocol):
    """The part of ``serial.Serial`` the reader uses (opened with ``timeout=0``)."""

    def read(self, size: int = ...) -> bytes: ...

    def close(self) -> None: ...


class RfidPortalSensor:
    """One portal (one direction, one bay). The constructor takes an open port; no I/O."""

    def __init__(
        self,
        device: str,
        bay: str,
        options: RfidOptions,
        tags: dict[str, Pallet],
        port: SerialPort,
    ) -> None:
        self._device = device
        self._bay = bay
        self._options = options
        self._tags = tags
        self._port = port
        self._buffer = b""
        self._last_seen: dict[str, int] = {}

    @classmethod
    def from_config(cls, config: SensorConfig) -> RfidPortalSensor:
        options = RfidOptions.parse(config)
        assert config.bay is not None  # checked by parse
        tags = load_tags(options.tags)
        try:
            import serial
        except ImportError:
            raise SensorOpenError(
                "rfid-serial needs pyserial: install pledgewatch[hardware]"
            ) from None
        try:
            port = serial.Serial(options.port, options.baudrate, timeout=0)
        except (OSError, ValueError) as exc:
            raise SensorOpenError(f"rfid-serial: cannot open {options.port}: {exc}") from None
        return cls(config.device, config.bay, options, tags, port)

    @property
    def device_id(self) -> str:
        return self._device

    def poll(self, now_ms: int) -> list[PollResult]:
        """Every complete line read so far, without blocking; partial lines wait."""
        try:
            data = self._read_available()
        except OSError as exc:
            return [Malformed(self._device, f"serial port error: {exc}", "")]
        out: list[PollResult] = []
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        if len(self._buffer) > MAX_LINE:
            out.append(self._malformed(f"no newline within {MAX_LINE} bytes", self._buffer))
            self._buffer = b""
        for line in lines:
            result = self._line(line.rstrip(b"\r"), now_ms)
            if result is not None:
                out.append(result)
        self._forget_old(now_ms)
        return out

    def close(self) -> None:
        self._port.close()

    def _read_available(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while total < MAX_READ_PER_POLL:
            chunk = self._port.read(READ_CHUNK)
            chunks.append(chunk)
            total += len(chunk)
            if len(chunk) < READ_CHUNK:
                break
        return b"".join(chunks)

    def _line(self, line: bytes, now_ms: int) -> PollResult | None:
        if not line.strip():
            return None
        if len(line) > MAX_LINE:
            return self._malformed(f"line longer than {MAX_LINE} bytes", line)
        try:
            text = line.decode("ascii").strip()
        except UnicodeDecodeError:
            return self._malformed("line is not ASCII (noise on the serial line?)", line)
        epc, _, rssi = text.partition(",")
        if _EPC.fullmatch(epc) is None or len(epc) % 2:
            return self._malformed("EPC is not 8-124 hex digits (even count)", line)
        if rssi and _RSSI.fullmatch(rssi) is None:
            return self._malformed(f"RSSI {rssi!r} is not a number", line)
        pallet = self._tags.get(epc.lower())
        if pallet is None:
            return self._malformed(f"unknown EPC {epc.lower()} (not in the tags file)", line)
        last = self._last_seen.get(epc.lower())
        self._last_seen[epc.lower()] = now_ms
        if last is not None and now_ms - last < self._options.debounce_ms:
            return None
        return Reading(
            self._device,
            self._options.direction.kind,
            now_ms,
            bay=self._bay,
            sku=pallet.sku,
            lot=pallet.lot,
            qty=pallet.qty,
        )

    def _malformed(self, reason: str, raw: bytes) -> Malformed:
        return Malformed(self._device, reason, clip(raw))

    def _forget_old(self, now_ms: int) -> None:
        if len(self._last_seen) < 1024:
            return
        window = self._options.debounce_ms
        self._last_seen = {e: t for e, t in self._last_seen.items() if now_ms - t < window}
