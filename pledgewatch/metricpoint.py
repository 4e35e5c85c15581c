"""Metric points in InfluxDB line protocol, and a bounded buffer that never blocks its caller.

Metrics are infrastructure, not evidence: nothing here is signed or hashed, values may be
floats, and a point that cannot be delivered is dropped (and counted), never retried forever.
Stdlib only: the adapters that talk to a TSDB (``anchor.metrics``, ``gateway.metrics``) plug an
influxdb-client sink into ``MetricsWriter``.

**Line protocol** (InfluxDB v2 write API, also accepted by VictoriaMetrics), one point::

    measurement[,tag_key=tag_value...] field_key=field_value[,field_key=field_value...] ts_ms

- tags are sorted by key (Go ``bytes.Compare`` order = code-point order), fields too;
- measurement: ``\\``, ``,`` and space are escaped with a backslash;
- tag keys, tag values, field keys: ``\\``, ``,``, ``=`` and space are escaped;
- string field values are double-quoted, with ``\\`` and ``"`` escaped;
- integers carry an ``i`` suffix (int64 range), booleans are ``true``/``false``, floats are
  Python's shortest round-trip ``repr`` (``0.5``, ``1e-05``); NaN and ±inf are refused;
- the timestamp is integer milliseconds (write with ``precision=ms``).

Refused with ``ValidationError`` (line protocol cannot carry them, or InfluxDB reserves them):
control characters (newline, carriage return, tab, ...) anywhere; empty measurement, tag key or
field key; a measurement starting with ``#`` (a comment line); names starting with ``_``; a tag
or field key ``time``; no fields; string fields over 64 KiB. An empty tag value is omitted (the
spec forbids empty tag values). Escaping ``\\`` as ``\\\\`` follows the v2 parser (and
VictoriaMetrics): InfluxDB 1.x keeps both backslashes of a tag value, so ids used as tags
should not contain backslashes.
"""

from __future__ import annotations

import enum
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from pledgewatch.errors import PledgewatchError, ValidationError

log = logging.getLogger(__name__)

FieldValue = bool | int | float | str

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_TS_MS = INT64_MAX // 1_000_000  # the TSDB stores nanoseconds in an int64
MAX_STRING_BYTES = 64 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ESCAPE_MEASUREMENT = str.maketrans({"\\": "\\\\", ",": "\\,", " ": "\\ "})
_ESCAPE_KEY = str.maketrans({"\\": "\\\\", ",": "\\,", "=": "\\=", " ": "\\ "})
_ESCAPE_STRING = str.maketrans({"\\": "\\\\", '"': '\\"'})


@dataclass(frozen=True, slots=True, eq=False)
class Point:
    """One metric point; validated and encoded once, at construction.

    ``tags`` and ``fields`` are copied into read-only mappings. Two points are equal when their
    lines are (so ``1`` and ``1.0`` are different fields, as they are in the TSDB).
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    ts_ms: int
    line: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tags", MappingProxyType(dict(self.tags)))
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))
        line = encode_line(self.measurement, self.tags, self.fields, self.ts_ms)
        object.__setattr__(self, "line", line)

    def to_line(self) -> str:
        """The point as one line of line protocol (no trailing newline)."""
        return self.line

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and other.line == self.line

    def __hash__(self) -> int:
        return hash(self.line)


def encode_line(
    measurement: str, tags: Mapping[str, str], fields: Mapping[str, FieldValue], ts_ms: int
) -> str:
    """One line of line protocol (module docstring); raises ``ValidationError``."""
    name = _name("measurement", measurement)
    if name.startswith("#"):
        raise ValidationError(f"measurement: got {measurement!r}, want no leading '#' (comment)")
    if not fields:
        raise ValidationError(f"{measurement}: got no fields, want at least one")
    if isinstance(ts_ms, bool) or not isinstance(ts_ms, int) or abs(ts_ms) > MAX_TS_MS:
        raise ValidationError(
            f"{measurement}: ts_ms got {ts_ms!r}, want an int within ±{MAX_TS_MS}"
        )
    tag_text = "".join(
        f",{_key('tag key', k)}={_tag_value(k, v)}" for k, v in sorted(tags.items()) if v != ""
    )
    field_text = ",".join(
        f"{_key('field key', k)}={_value(k, v)}" for k, v in sorted(fields.items())
    )
    return f"{name.translate(_ESCAPE_MEASUREMENT)}{tag_text} {field_text} {ts_ms}"


def _name(what: str, text: object) -> str:
    if not isinstance(text, str) or not text:
        raise ValidationError(f"{what}: got {text!r}, want a non-empty string")
    if _CONTROL.search(text):
        raise ValidationError(f"{what}: got {text!r}, want no control characters (newline, tab)")
    if text.startswith("_"):
        raise ValidationError(f"{what}: got {text!r}, want no leading '_' (reserved)")
    return text


def _key(what: str, text: object) -> str:
    name = _name(what, text)
    if name == "time":
        raise ValidationError(f"{what}: got 'time', want another name (reserved)")
    return name.translate(_ESCAPE_KEY)


def _tag_value(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"tag {key!r}: got {value!r}, want a string")
    if _CONTROL.search(value):
        raise ValidationError(f"tag {key!r}: got {value!r}, want no control characters")
    return value.translate(_ESCAPE_KEY)


def _value(key: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValidationError(f"field {key!r}: got {value}, want an int64")
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"field {key!r}: got {value!r}, want a finite float")
        return repr(value)
    if isinstance(value, str):
        if _CONTROL.search(value):
            raise ValidationError(f"field {key!r}: got {value!r}, want no control characters")
        if len(value.encode()) > MAX_STRING_BYTES:
            raise ValidationError(f"field {key!r}: got {len(value.encode())} bytes, want ≤ 64 KiB")
        return '"' + value.translate(_ESCAPE_STRING) + '"'
    raise ValidationError(
        f"field {key!r}: got {type(value).__name__}, want bool, int, float or str"
    )


class SinkUnavailable(PledgewatchError):
    """The TSDB cannot take a batch now (down, timeout, 5xx, 429, auth): keep it, retry later."""


class SinkRefused(PledgewatchError):
    """The TSDB refused the batch itself (400, 413, 422): retrying cannot help, drop it."""


class LineSink(Protocol):
    """Where batches go: one ``write`` is one request; it raises only the two errors above."""

    def write(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...


class Flush(enum.Enum):
    DONE = "done"  # everything waiting was written (or there was nothing)
    MORE = "more"  # a full batch was written and more is waiting
    FAILED = "failed"  # the sink is unavailable; the batch went back into the buffer


@dataclass(frozen=True, slots=True)
class WriterStats:
    buffered: int  # points waiting now
    written: int  # points the sink accepted
    dropped_full: int  # oldest points pushed out of the full buffer (TSDB slow or down)
    dropped_refused: int  # points in batches the TSDB refused
    failed_writes: int  # write attempts that found the sink unavailable

    @property
    def dropped(self) -> int:
        return self.dropped_full + self.dropped_refused


STATS_MEASUREMENT = "pw_metrics"
STATS_EVERY_MS = 60_000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class MetricsWriter:
    """A bounded buffer of encoded points and one flusher thread that empties it into a sink.

    ``record()`` never blocks on I/O and never raises: it takes a lock held only for in-memory
    steps (never during a write) and appends to a ``deque`` of at most ``buffer_points`` lines.
    When the buffer is full the *oldest* line is pushed out and counted (``dropped_full``), so
    the buffer always holds the newest points. The flusher takes up to ``batch_points`` lines
    per request; when the sink is unavailable the batch goes back to the front of the buffer
    (what no longer fits is counted as dropped) and the flusher backs off (interval × 2 per
    failure, at most ``retry_max_ms``). Every request also carries a ``pw_metrics`` point with
    the counters (``stats_tags`` as its tags), so after an outage the first successful write
    reports how many points were lost. Memory: at most ``buffer_points`` + ``batch_points``
    lines. Constructing does no I/O; ``start()`` starts the thread, ``close()`` stops it.
    """

    def __init__(
        self,
        sink: LineSink,
        *,
        buffer_points: int,
        flush_interval_ms: int,
        stats_tags: Mapping[str, str],
        batch_points: int = 5000,
        retry_max_ms: int = 30_000,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        for name, value in (
            ("buffer_points", buffer_points),
            ("batch_points", batch_points),
            ("flush_interval_ms", flush_interval_ms),
        ):
            if value < 1:
                raise ValidationError(f"MetricsWriter {name}: got {value}, want ≥ 1")
        Point(STATS_MEASUREMENT, stats_tags, {"dropped": 0}, 0)  # validates the tags now
        self._sink = sink
        self._capacity = buffer_points
        self._batch = batch_points
        self._interval_ms = flush_interval_ms
        self._retry_max_ms = max(retry_max_ms, flush_interval_ms)
        self._stats_tags = dict(stats_tags)
        self._clock = clock
        self._buffer: deque[str] = deque(maxlen=buffer_points)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._written = self._dropped_full = self._dropped_refused = self._failed = 0
        self._reported_dropped = 0
        self._reported_ms: int | None = None
        self._down = False

    def record(self, point: Point) -> None:
        """Queue one point; O(1), never blocks on I/O, never raises."""
        line = point.line
        with self._lock:
            if len(self._buffer) == self._capacity:
                self._dropped_full += 1  # the deque pushes out the oldest line
            self._buffer.append(line)

    def record_all(self, points: Iterable[Point]) -> None:
        """Queue several points (encoded before the lock is taken)."""
        lines = [p.line for p in points]
        with self._lock:
            self._dropped_full += max(len(self._buffer) + len(lines) - self._capacity, 0)
            self._buffer.extend(lines)

    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(
                len(self._buffer),
                self._written,
                self._dropped_full,
                self._dropped_refused,
                self._failed,
            )

    def start(self) -> None:
        if self._thread is not None:
            raise ValidationError("MetricsWriter already started")
        self._thread = threading.Thread(target=self._run, name="metrics-writer", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the flusher, try once more to write what is left, close the sink.

        Waits at most ``timeout_s`` for a flusher stuck in a request; then leaves it (daemon
        thread) and skips the final write rather than race it.
        """
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.error(
                    "metrics: flusher still in a request; %d points abandoned",
                    self.stats().buffered,
                )
                return
        outcome = self.flush_once(force_stats=True)
        while outcome is Flush.MORE:
            outcome = self.flush_once()
        left = self.stats().buffered
        if left:
            log.warning("metrics: TSDB unavailable at close; %d points not written", left)
        self._sink.close()

    def _run(self) -> None:
        delay = self._interval_ms
        while not self._stop.wait(delay / 1000):
            outcome = self.flush_once()
            while outcome is Flush.MORE and not self._stop.is_set():
                outcome = self.flush_once()
            failed = outcome is Flush.FAILED
            delay = min(delay * 2, self._retry_max_ms) if failed else self._interval_ms

    def flush_once(self, *, force_stats: bool = False) -> Flush:
        """Write one batch (with the stats point) if anything is due. Called by the flusher
        thread; tests may call it directly on a writer that was not started."""
        with self._lock:
            count = min(len(self._buffer), self._batch)
            batch = [self._buffer.popleft() for _ in range(count)]
            more = bool(self._buffer)
        now = self._clock()
        if not batch and not force_stats and not self._stats_due(now):
            return Flush.DONE
        stats, dropped = self._stats_line(now, len(batch))
        try:
            self._sink.write([*batch, stats])
        except SinkRefused as exc:
            return self._refused(batch, exc, more)
        except SinkUnavailable as exc:
            return self._unavailable(batch, str(exc))
        except Exception as exc:  # a sink bug must not kill the flusher: logged, retried
            log.exception("metrics: sink failed unexpectedly")
            return self._unavailable(batch, repr(exc))
        with self._lock:
            self._written += len(batch)
        self._reported_dropped = dropped
        self._reported_ms = now
        if self._down:
            self._down = False
            log.info(
                "metrics: TSDB reachable again (%d points dropped so far)", self._reported_dropped
            )
        return Flush.MORE if more else Flush.DONE

    def _stats_due(self, now: int) -> bool:
        if self._reported_ms is None or now - self._reported_ms >= STATS_EVERY_MS:
            return True
        with self._lock:
            return self._dropped_full + self._dropped_refused != self._reported_dropped

    def _stats_line(self, now: int, in_batch: int) -> tuple[str, int]:
        """The ``pw_metrics`` line now, and the drop count it reports."""
        s = self.stats()
        fields = {
            "buffered": s.buffered + in_batch,
            "written": s.written,
            "dropped": s.dropped,
            "dropped_full": s.dropped_full,
            "dropped_refused": s.dropped_refused,
            "failed_writes": s.failed_writes,
        }
        return Point(STATS_MEASUREMENT, self._stats_tags, fields, now).line, s.dropped

    def _refused(self, batch: list[str], exc: SinkRefused, more: bool) -> Flush:
        with self._lock:
            self._dropped_refused += len(batch)
        log.error("metrics: TSDB refused a batch of %d points (dropped): %s", len(batch), exc)
        return Flush.MORE if more else Flush.DONE

    def _unavailable(self, batch: list[str], why: str) -> Flush:
        with self._lock:
            room = self._capacity - len(self._buffer)
            keep = batch[max(len(batch) - room, 0) :]  # the newest of the batch
            self._dropped_full += len(batch) - len(keep)
            self._buffer.extendleft(reversed(keep))
            self._failed += 1
        if not self._down:
            self._down = True
            log.warning(
                "metrics: TSDB unavailable (%s); keeping the newest %d points", why, self._capacity
            )
        return Flush.FAILED
