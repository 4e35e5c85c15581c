"""Metrics: line protocol, the point builders, and the write path against a real VictoriaMetrics.

- Line protocol: golden escaping cases (spaces, commas, equals, quotes, backslashes), every
  refusal (control characters, NaN/inf, reserved names, int64 range), and a round trip of the
  tricky names through the real v2 parser (VictoriaMetrics `/api/v2/write`).
- The writer (`MetricsWriter` + each adapter's influxdb-client sink): points land with their
  tags, fields and timestamps; with the TSDB stopped, a burst of 100k `record()` calls stays
  fast and raises nothing, the oldest points are dropped and counted, and once the TSDB is back
  the newest points and the drop count (`pw_metrics`) land. A TSDB that accepts connections
  but never answers does not slow `record()` either.
- The HTTP status mapping (400 → refused and dropped, 503/401 → kept for retry) runs against a
  stdlib stand-in HTTP server: VictoriaMetrics answers 204 even to bad lines.
"""

from __future__ import annotations

import datetime as dt
import http.server
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pytest

from anchor import metrics as anchor_metrics
from anchor.alerts.lifecycle import apply_conditions
from anchor.alerts.model import Scope
from anchor.config import LogSection
from anchor.ingest import Ingestor, Reject
from anchor.loanbook import Loan, LoanBook, Pledge, PledgeType, Price
from anchor.log import Sequencer
from anchor.reconcile.conditions import Condition, Rule, Severity
from anchor.reconcile.snapshot import Snapshot, StockLine
from anchor.registry import enrol, load_keys
from anchor.store.db import Database
from gateway import metrics as gateway_metrics
from gateway.health import Alarm, GatewayHealth, HealthState
from pledgewatch.errors import ValidationError
from pledgewatch.metricpoint import (
    STATS_MEASUREMENT,
    Flush,
    MetricsWriter,
    Point,
    SinkRefused,
    SinkUnavailable,
)
from pledgewatch.signing import SigningKey
from pledgewatch.tomlconf import Fields

from servers import VictoriaMetricsServer
from store_rig import BASE_MS, Gateway, open_store

# --- line protocol -------------------------------------------------------------------------

GOLDEN = [
    ("plain", Point("cpu", {"host": "a"}, {"v": 1.5}, 1000), "cpu,host=a v=1.5 1000"),
    (
        "tags and fields sorted, int suffix, booleans",
        Point("m", {"b": "2", "a": "1"}, {"n": 3, "ok": True, "f": False}, 5),
        "m,a=1,b=2 f=false,n=3i,ok=true 5",
    ),
    (
        "measurement: comma and space escaped, equals not",
        Point("my meas,x=y", {}, {"v": 1}, 0),
        r"my\ meas\,x=y v=1i 0",
    ),
    (
        "tag key and value: comma, equals, space escaped",
        Point("m", {"k e,y=": "v a,l=ue"}, {"v": 1}, 0),
        r"m,k\ e\,y\==v\ a\,l\=ue v=1i 0",
    ),
    (
        "field key: comma, equals, space escaped",
        Point("m", {}, {"f k,=": 1}, 0),
        r"m f\ k\,\==1i 0",
    ),
    (
        "string field: quotes and backslashes escaped, the rest as is",
        Point("m", {}, {"s": 'say "hi", a=b \\ end\\'}, 0),
        r'm s="say \"hi\", a=b \\ end\\" 0',
    ),
    (
        "backslash doubled in names and tag values, also a trailing one",
        Point("a\\b", {"t": "x\\"}, {"f\\g": 1}, 0),
        r"a\\b,t=x\\ f\\g=1i 0",
    ),
    (
        "double quote in a tag value is literal",
        Point("m", {"t": 'a"b'}, {"v": 1}, 0),
        'm,t=a"b v=1i 0',
    ),
    ("empty tag value omitted", Point("m", {"a": "", "b": "x"}, {"v": 1}, 0), "m,b=x v=1i 0"),
    (
        "floats: shortest round-trip repr",
        Point("m", {}, {"a": 0.1, "b": 1e-5, "c": 1e16, "d": -0.0, "e": 2.0}, 0),
        "m a=0.1,b=1e-05,c=1e+16,d=-0.0,e=2.0 0",
    ),
    (
        "int64 bounds, negative timestamp",
        Point("m", {}, {"a": -(2**63), "b": 2**63 - 1}, -5),
        "m a=-9223372036854775808i,b=9223372036854775807i -5",
    ),
    ("unicode as is", Point("仓库", {"lot": "WR-1/ä"}, {"v": 1}, 0), "仓库,lot=WR-1/ä v=1i 0"),
]


@pytest.mark.parametrize(("case", "point", "line"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_line_protocol_golden(case: str, point: Point, line: str) -> None:
    assert point.to_line() == line


REFUSED: list[tuple[str, Callable[[], Point]]] = [
    ("newline in measurement", lambda: Point("a\nb", {}, {"v": 1}, 0)),
    ("newline in tag value", lambda: Point("m", {"t": "a\nb"}, {"v": 1}, 0)),
    ("carriage return in tag key", lambda: Point("m", {"a\rb": "x"}, {"v": 1}, 0)),
    ("tab in field key", lambda: Point("m", {}, {"a\tb": 1}, 0)),
    ("newline in string field", lambda: Point("m", {}, {"s": "a\nb"}, 0)),
    ("NaN", lambda: Point("m", {}, {"v": math.nan}, 0)),
    ("inf", lambda: Point("m", {}, {"v": math.inf}, 0)),
    ("-inf", lambda: Point("m", {}, {"v": -math.inf}, 0)),
    ("no fields", lambda: Point("m", {"t": "x"}, {}, 0)),
    ("empty measurement", lambda: Point("", {}, {"v": 1}, 0)),
    ("empty tag key", lambda: Point("m", {"": "x"}, {"v": 1}, 0)),
    ("empty field key", lambda: Point("m", {}, {"": 1}, 0)),
    ("measurement that reads as a comment", lambda: Point("#m", {}, {"v": 1}, 0)),
    ("reserved _ measurement", lambda: Point("_m", {}, {"v": 1}, 0)),
    ("reserved _ tag key", lambda: Point("m", {"_k": "x"}, {"v": 1}, 0)),
    ("reserved _ field key", lambda: Point("m", {}, {"_f": 1}, 0)),
    ("tag key time", lambda: Point("m", {"time": "x"}, {"v": 1}, 0)),
    ("field key time", lambda: Point("m", {}, {"time": 1}, 0)),
    ("int above int64", lambda: Point("m", {}, {"v": 2**63}, 0)),
    ("Decimal field", lambda: Point("m", {}, {"v": Decimal(1)}, 0)),
    ("None field", lambda: Point("m", {}, {"v": None}, 0)),
    ("non-string tag value", lambda: Point("m", {"t": 1}, {"v": 1}, 0)),
    ("float timestamp", lambda: Point("m", {}, {"v": 1}, 1.5)),
    ("bool timestamp", lambda: Point("m", {}, {"v": 1}, True)),
    ("timestamp beyond int64 ns", lambda: Point("m", {}, {"v": 1}, 2**62)),
    ("string field over 64 KiB", lambda: Point("m", {}, {"s": "x" * (64 * 1024 + 1)}, 0)),
]


@pytest.mark.parametrize(("case", "make"), REFUSED, ids=[r[0] for r in REFUSED])
def test_line_protocol_refuses(case: str, make: Callable[[], Point]) -> None:
    with pytest.raises(ValidationError):
        make()


def test_point_is_immutable_and_equal_by_its_line() -> None:
    tags = {"t": "x"}
    point = Point("m", tags, {"v": 1}, 0)
    tags["t"] = "changed"
    assert point.to_line() == "m,t=x v=1i 0"
    with pytest.raises(TypeError):
        point.tags["t"] = "y"  # type: ignore[index]
    assert point == Point("m", {"t": "x"}, {"v": 1}, 0)
    assert point != Point("m", {"t": "x"}, {"v": 1.0}, 0)  # int and float are other fields
    assert len({point, Point("m", {"t": "x"}, {"v": 1}, 0)}) == 1


# --- the writer's logic against an in-memory sink (pure logic, no I/O) ---------------------


class ListSink:
    """Collects written lines; `state` = "up", "down" (unavailable) or "refuse"."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.state = "up"
        self.closed = False

    def write(self, lines: Sequence[str]) -> None:
        if self.state == "down":
            raise SinkUnavailable("down")
        if self.state == "refuse":
            raise SinkRefused("HTTP 400")
        self.lines.extend(lines)

    def close(self) -> None:
        self.closed = True


def data_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith(STATS_MEASUREMENT)]


def point(i: int, run: str = "t") -> Point:
    return Point("pw_test", {"run": run}, {"i": i}, BASE_MS + i)


def test_full_buffer_drops_the_oldest_and_a_failed_batch_goes_back_in_front() -> None:
    sink = ListSink()
    writer = MetricsWriter(
        sink, buffer_points=5, flush_interval_ms=10, stats_tags={}, batch_points=3
    )
    sink.state = "down"
    writer.record_all(point(i) for i in range(4))
    assert writer.flush_once() is Flush.FAILED  # 0, 1, 2 go back in front of 3
    for i in range(4, 7):
        writer.record(point(i))  # pushes out 0 and 1
    stats = writer.stats()
    assert (stats.buffered, stats.dropped_full, stats.failed_writes) == (5, 2, 1)
    sink.state = "up"
    assert writer.flush_once() is Flush.MORE
    assert writer.flush_once() is Flush.DONE
    assert data_lines(sink.lines) == [point(i).line for i in range(2, 7)]
    stats = writer.stats()
    assert (stats.buffered, stats.written, stats.dropped) == (0, 5, 2)
    assert f"{STATS_MEASUREMENT} buffered=2i,dropped=2i,dropped_full=2i" in sink.lines[-1]


def test_refused_batches_are_dropped_and_counted_apart() -> None:
    sink = ListSink()
    writer = MetricsWriter(sink, buffer_points=10, flush_interval_ms=10, stats_tags={"c": "x"})
    sink.state = "refuse"
    writer.record_all([point(1), point(2)])
    assert writer.flush_once() is Flush.DONE
    stats = writer.stats()
    assert (stats.buffered, stats.dropped_refused, stats.dropped_full) == (0, 2, 0)
    sink.state = "up"
    assert writer.flush_once() is Flush.DONE  # nothing waits, but the drop count is news
    assert sink.lines[-1].startswith(f"{STATS_MEASUREMENT},c=x buffered=0i,dropped=2i")
    assert writer.flush_once() is Flush.DONE
    assert len(sink.lines) == 1  # no news, no request (until STATS_EVERY_MS)


def test_close_writes_what_is_left_and_closes_the_sink() -> None:
    sink = ListSink()
    writer = MetricsWriter(sink, buffer_points=10, flush_interval_ms=60_000, stats_tags={})
    writer.start()
    writer.record(point(1))
    writer.close()
    assert data_lines(sink.lines) == [point(1).line]
    assert sink.closed


# --- config --------------------------------------------------------------------------------

PARSERS = [anchor_metrics.parse_metrics, gateway_metrics.parse_metrics]


@pytest.mark.parametrize("parse", PARSERS, ids=["anchor", "gateway"])
def test_parse_metrics(parse: Callable[[Fields], Any]) -> None:
    problems: list[str] = []
    assert parse(Fields({}, "metrics", problems)) is None
    assert problems == []
    raw = {"url": "http://tsdb:8428", "token": "t0k", "org": "bank", "bucket": "pw",
           "flush_interval_ms": 500, "buffer_points": 5000}  # fmt: skip
    config = parse(Fields(raw, "metrics", problems))
    assert problems == []
    assert (config.url, config.token, config.org, config.bucket) == raw_values(raw)
    assert (config.flush_interval_ms, config.buffer_points) == (500, 5000)
    assert "t0k" not in repr(config)
    bad = {"url": "ftp://x", "flush_interval_ms": 0, "buffer_points": "many", "urll": 1}
    parse(Fields(bad, "metrics", problems))
    assert len(problems) == 4, problems
    problems.clear()
    assert parse(Fields({"token": "t"}, "metrics", problems)) is None
    assert problems == ["metrics.url: missing (token/org/bucket are set)"]


def raw_values(raw: dict[str, Any]) -> tuple[Any, ...]:
    return (raw["url"], raw["token"], raw["org"], raw["bucket"])


# --- point builders ------------------------------------------------------------------------


def fields_of(points: list[Point], measurement: str, **tags: str) -> dict[str, Any]:
    found = [p for p in points if p.measurement == measurement and dict(p.tags) == tags]
    assert len(found) == 1, (measurement, tags, [p.line for p in points])
    return dict(found[0].fields)


def test_ingest_points() -> None:
    counts = Counter({"stored": 7, "duplicate": 2, "rejected:bad_signature": 3,
                      "rejected:unknown_key": 1})  # fmt: skip
    points = anchor_metrics.ingest_points("worker-1", counts, BASE_MS)
    assert fields_of(points, "pw_ingest", worker="worker-1") == {
        "stored": 7, "duplicates": 2, "rejected": 4,
    }  # fmt: skip
    assert len(points) == 1 + len(Reject)
    assert fields_of(points, "pw_rejects", worker="worker-1", reason="bad_signature") == {
        "count": 3
    }
    assert fields_of(points, "pw_rejects", worker="worker-1", reason="key_revoked") == {"count": 0}


@pytest.fixture
def store(store_url: str) -> Iterator[Database]:
    db = open_store(store_url)
    yield db
    db.close()


def fill_store(db: Database) -> None:
    """Device d1: seq 1-3; device d2: seq 1 and 3 (2 missing); 5 of 6 events sequenced;
    checkpoints 1 (witnessed, anchored), 2 (witnessed), 3 and 5 (the sequencer's); three
    open alerts."""
    gw = Gateway("wh-1", "gw-1")
    enrol(db, "wh-1", "gw-1", gw.key.public_key, now_ms=BASE_MS)
    first = [gw.event("d1"), gw.event("d1"), gw.event("d2"), gw.event("d1")]
    ingestor = Ingestor(load_keys(db.read()), "worker-1")
    with db.transaction() as tx:
        ingestor.process(tx, [gw.message(e) for e in first], BASE_MS + 10_000)
    log = LogSection(checkpoint_interval_ms=1000, checkpoint_max_entries=100, gap_timeout_s=60)
    Sequencer(db, "test/log", SigningKey.generate(), log).step(BASE_MS + 11_000)
    late = gw.event("d2", seq=3, prev="ab" * 32)  # seq 2 never arrives
    with db.transaction() as tx:
        ingestor.process(tx, [gw.message(late)], BASE_MS + 20_000)
        for size, created, witnessed, anchored in (
            (1, BASE_MS + 1000, True, True),
            (2, BASE_MS + 2000, True, False),
            (3, BASE_MS + 3000, False, False),
        ):
            tx.execute(
                "INSERT INTO checkpoints (size, root, note, created_ms, cosigned_note, "
                "ledger_receipt) VALUES (?, ?, ?, ?, ?, ?)",
                (size, b"r", "n", created, "c" if witnessed else None, "l" if anchored else None),
            )
    conditions = [
        Condition(Rule.SHORTFALL, Severity.MAJOR, "wh-1", "lot:A", "short", (), BASE_MS),
        Condition(Rule.SHORTFALL, Severity.MAJOR, "wh-1", "lot:B", "short", (), BASE_MS),
        Condition(Rule.DEVICE_SILENT, Severity.WARNING, "wh-1", "device:d2", "quiet", (), BASE_MS),
    ]
    apply_conditions(db, conditions, BASE_MS, scope=Scope.of(["wh-1"]))


def test_store_points(store: Database) -> None:
    fill_store(store)
    now = BASE_MS + 30_000
    points = anchor_metrics.store_points(store, now)
    assert fields_of(points, "pw_log") == {
        "size": 5,  # 1 key leaf + 4 events
        "unsequenced": 1,
        "checkpoint_size": 5,
        "checkpoint_age_ms": 19_000,  # cut by the sequencer at BASE_MS + 11_000
        "witnessed_size": 2,
        "witness_lag_ms": 27_000,  # checkpoint 3 waits since BASE_MS + 3000
        "anchored_size": 1,
        "ledger_lag_ms": 28_000,  # checkpoint 2 waits since BASE_MS + 2000
    }
    alerts = [p for p in points if p.measurement == "pw_alerts"]
    assert len(alerts) == len(Rule) * len(Severity)
    short = fields_of(points, "pw_alerts", rule="SHORTFALL", severity="major", category="business")
    assert short == {"open": 2, "acknowledged": 0}
    silent = fields_of(
        points, "pw_alerts", rule="DEVICE_SILENT", severity="warning", category="infrastructure"
    )
    assert silent == {"open": 1, "acknowledged": 0}
    assert sum(p.fields["open"] for p in alerts) == 3  # type: ignore[misc]
    d1 = fields_of(points, "pw_device", warehouse="wh-1", gateway="gw-1", device="d1")
    assert d1 == {"last_seen_ms": BASE_MS + 10_000, "silent_ms": 20_000,
                  "last_event_ts_ms": BASE_MS + 3000, "seq": 3, "unchained": 0}  # fmt: skip
    d2 = fields_of(points, "pw_device", warehouse="wh-1", gateway="gw-1", device="d2")
    assert (d2["last_seen_ms"], d2["seq"], d2["unchained"]) == (BASE_MS + 20_000, 3, 2)


def test_collateral_points() -> None:
    day = dt.date(2025, 6, 15)
    now = int(dt.datetime(2025, 6, 15, 12, tzinfo=dt.UTC).timestamp() * 1000)

    def loan(loan_id: str, kind: PledgeType, outstanding: str, start: dt.date) -> Loan:
        floor = Decimal(150) if kind is PledgeType.DYNAMIC else Decimal(0)
        end = day + dt.timedelta(days=90)
        return Loan(loan_id, "acme", "wh-1", "CNY", Decimal(outstanding), start, end, kind,
                    Decimal("0.7"), Decimal("1.3"), Decimal("1.1"), floor)  # fmt: skip

    book = LoanBook(
        loans=(
            loan("L-1", PledgeType.STATIC, "1000", day),
            loan("L-2", PledgeType.DYNAMIC, "100", day),
            loan("L-3", PledgeType.STATIC, "0", day),
            loan("L-9", PledgeType.STATIC, "500", day + dt.timedelta(days=1)),  # not yet
        ),
        pledges=(
            Pledge("L-1", "WR-1", "steel", 100),
            Pledge("L-2", None, "copper", 0),
            Pledge("L-9", "WR-9", "steel", 5),
        ),
        prices=(Price("steel", day, Decimal("10")), Price("copper", day, Decimal("4"))),
    )

    def line(bay: str, lot: str, sku: str, qty: int) -> StockLine:
        return StockLine("wh-1", bay, lot, sku, qty, None, None, None, (), now)

    snapshot = Snapshot(
        stock=(line("b1", "WR-1", "steel", 50), line("b2", "WR-1", "steel", 30),
               line("b3", "C-7", "copper", 50)),
        unloads=(), weights=(), devices=(), tampers=(),
    )  # fmt: skip
    points = anchor_metrics.collateral_points(snapshot, book, now)
    bays = {
        (p.tags["bay"], p.tags["lot"], p.tags["sku"]): p.fields["book_qty"]
        for p in points
        if p.measurement == "pw_bay_stock" and p.tags["warehouse"] == "wh-1"
    }
    assert bays == {("b1", "WR-1", "steel"): 50, ("b2", "WR-1", "steel"): 30,
                    ("b3", "C-7", "copper"): 50}  # fmt: skip
    stock = fields_of(points, "pw_stock", warehouse="wh-1", loan="L-1", lot="WR-1", sku="steel")
    assert stock == {"book_qty": 80, "pledged_qty": 100}
    dynamic = fields_of(points, "pw_stock", warehouse="wh-1", loan="L-2", sku="copper")
    assert dynamic == {"book_qty": 50, "pledged_qty": 0}
    l1 = fields_of(points, "pw_coverage", warehouse="wh-1", loan="L-1", currency="CNY")
    assert l1 == {"value": 800.0, "outstanding": 1000.0, "coverage": 0.8, "warning": 1.3,
                  "liquidation": 1.1, "unpriced_skus": 0}  # fmt: skip
    l2 = fields_of(points, "pw_coverage", warehouse="wh-1", loan="L-2", currency="CNY")
    assert (l2["coverage"], l2["min_value"]) == (2.0, 150.0)
    l3 = fields_of(points, "pw_coverage", warehouse="wh-1", loan="L-3", currency="CNY")
    assert "coverage" not in l3  # outstanding 0: no ratio, never inf or NaN
    assert not [p for p in points if p.tags.get("loan") == "L-9"]


def health(**changes: Any) -> GatewayHealth:
    base: dict[str, Any] = {
        "state": HealthState.ALARM, "alarms": (Alarm.BROKER_DOWN, Alarm.OUTBOX_STALE),
        "warehouse": "wh-1", "gateway": "gw-1", "ts_ms": BASE_MS, "connected": False,
        "outbox_depth": 42, "outbox_capacity": 1000, "oldest_unsent_age_ms": 9000,
        "last_receipt_ms": None,
    }  # fmt: skip
    return GatewayHealth(**{**base, **changes})


def test_gateway_points() -> None:
    counters = {"events_built": 120, "receipted": 78, "malformed:scale-1": 2,
                "malformed:rfid-1": 1, "invalid_reading:scale-1": 4}  # fmt: skip
    (p,) = gateway_metrics.gateway_points(health(), counters)
    assert (p.measurement, dict(p.tags), p.ts_ms) == (
        "pw_gateway", {"warehouse": "wh-1", "gateway": "gw-1"}, BASE_MS,
    )  # fmt: skip
    assert dict(p.fields) == {
        "outbox_depth": 42, "outbox_capacity": 1000, "oldest_unsent_age_ms": 9000,
        "connected": False, "state": 2, "alarms": 2, "events_built": 120, "receipts": 78,
        "receipt_unknown": 0, "malformed": 3, "invalid_readings": 4,
    }  # fmt: skip
    (ok,) = gateway_metrics.gateway_points(
        health(state=HealthState.OK, alarms=(), oldest_unsent_age_ms=None, last_receipt_ms=5), {}
    )
    assert ok.fields["state"] == 0
    assert (ok.fields["oldest_unsent_age_ms"], ok.fields["last_receipt_ms"]) == (0, 5)


# --- the write path against a real VictoriaMetrics -----------------------------------------


def wait_until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def anchor_config(url: str, buffer_points: int = 10_000) -> anchor_metrics.MetricsConfig:
    return anchor_metrics.MetricsConfig(url, "", "bank", "pledgewatch", 50, buffer_points)


def series(vm: VictoriaMetricsServer, match: str) -> dict[str, dict[str, Any]]:
    """Exported series by metric name (labels without `__name__` under "labels")."""
    out = {}
    for s in vm.export(match):
        labels = dict(s["metric"])
        name = labels.pop("__name__")
        out[name] = {"labels": labels, "values": s["values"], "timestamps": s["timestamps"]}
    return out


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_points_land_with_their_tags_fields_and_timestamps(
    victoriametrics: VictoriaMetricsServer,
) -> None:
    ts = now_ms() - 60_000
    gw_config = gateway_metrics.MetricsConfig(victoriametrics.url, "", "o", "b", 100, 100)
    gw_writer = gateway_metrics.open_writer(gw_config, "wh-1", "gw-1")
    gw_writer.record_all(gateway_metrics.gateway_points(health(ts_ms=ts), {"events_built": 7}))
    an_writer = anchor_metrics.open_writer(anchor_config(victoriametrics.url), "worker-1")
    an_writer.record_all(anchor_metrics.ingest_points("worker-1", Counter(stored=5), ts + 1))
    for writer in (gw_writer, an_writer):
        writer.start()
    wait_until(lambda: gw_writer.stats().written == 1, "the gateway point written")
    wait_until(lambda: an_writer.stats().written == 1 + len(Reject), "the anchor points written")
    gw_writer.close()
    an_writer.close()
    got = series(victoriametrics, '{__name__=~"pw_gateway_.*"}')
    depth = got["pw_gateway_outbox_depth"]
    assert (depth["labels"], depth["values"], depth["timestamps"]) == (
        {"warehouse": "wh-1", "gateway": "gw-1"}, [42], [ts],
    )  # fmt: skip
    assert got["pw_gateway_connected"]["values"] == [0]
    assert got["pw_gateway_events_built"]["values"] == [7]
    stored = series(victoriametrics, "pw_ingest_stored")["pw_ingest_stored"]
    assert (stored["labels"], stored["values"], stored["timestamps"]) == (
        {"worker": "worker-1"}, [5], [ts + 1],
    )  # fmt: skip
    writers = victoriametrics.export(f"{STATS_MEASUREMENT}_written")
    assert sorted(str(sorted(s["metric"].items())) for s in writers) == sorted(
        str(sorted({"__name__": f"{STATS_MEASUREMENT}_written", **tags}.items()))
        for tags in (
            {"component": "anchor", "worker": "worker-1"},
            {"component": "gateway", "warehouse": "wh-1", "gateway": "gw-1"},
        )
    )


def test_escaped_names_round_trip_through_the_v2_parser(
    victoriametrics: VictoriaMetricsServer,
) -> None:
    tricky = {"sp": "a b", "co": "a,b", "eq": "a=b", "bs": "a\\b", "tail": "end\\",
              "qu": 'say "x"', "uni": "仓库 1"}  # fmt: skip
    ts = now_ms() - 1000
    sink = anchor_metrics.InfluxSink(anchor_config(victoriametrics.url))
    sink.write([Point("pw odd,m\\x", tricky, {"f k=": 1.25}, ts).line])
    sink.close()
    (only,) = victoriametrics.export('{__name__=~"pw.*"}')
    labels = dict(only["metric"])
    assert labels.pop("__name__") == "pw odd,m\\x_f k="
    assert labels == tricky
    assert (only["values"], only["timestamps"]) == ([1.25], [ts])


def test_tsdb_down_never_blocks_counts_drops_and_reports_them_when_back(
    victoriametrics: VictoriaMetricsServer,
) -> None:
    config = anchor_config(victoriametrics.url, buffer_points=1000)
    writer = MetricsWriter(
        anchor_metrics.InfluxSink(config, timeout_ms=2000),
        buffer_points=1000, flush_interval_ms=20, retry_max_ms=200,
        stats_tags={"component": "anchor", "worker": "w"},
    )  # fmt: skip
    writer.start()
    base = now_ms() - 300_000
    writer.record(Point("pw_test", {"run": "before"}, {"i": 0}, base))
    wait_until(lambda: writer.stats().written == 1, "the first point written")
    victoriametrics.stop()

    burst = [Point("pw_test", {"run": "burst"}, {"i": i}, base + i) for i in range(100_000)]
    elapsed: list[float] = []
    errors: list[BaseException] = []

    def record_burst() -> None:
        try:
            start = time.perf_counter()
            for p in burst:
                writer.record(p)
            elapsed.append(time.perf_counter() - start)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=record_burst)
    caller.start()
    caller.join(timeout=20)
    assert not caller.is_alive(), "record() blocked while the TSDB was down"
    assert errors == []
    print(f"100k record() calls with the TSDB down: {elapsed[0] * 1000:.0f} ms")
    assert elapsed[0] < 5.0
    wait_until(lambda: writer.stats().failed_writes >= 2, "the flusher noticed the outage")
    assert writer.stats().dropped_full >= 99_000

    victoriametrics.start()
    wait_until(lambda: writer.stats().buffered == 0, "the buffer drained", timeout=15)
    writer.record(Point("pw_test", {"run": "after"}, {"i": 1}, base + 200_000))
    wait_until(lambda: writer.stats().written == 1 + 1000 + 1, "the new point written")
    final = writer.stats()
    writer.close()
    assert final.buffered == 0
    assert final.written + final.dropped == 1 + 100_000 + 1  # every point accounted for
    assert final.dropped == final.dropped_full == 100_000 - 1000  # the buffer kept the newest
    got = victoriametrics.export('pw_test_i{run="burst"}')
    assert sorted(int(v) for v in got[0]["values"]) == list(range(99_000, 100_000))
    assert victoriametrics.export('pw_test_i{run="after"}')[0]["values"] == [1]
    reported = victoriametrics.export(f'{STATS_MEASUREMENT}_dropped{{worker="w"}}')[0]["values"]
    assert reported[0] == 0 and reported[-1] == final.dropped


def test_a_hung_tsdb_does_not_slow_record() -> None:
    """A peer that accepts TCP connections and never answers: the flusher waits in its
    request (up to the client timeout) while callers keep recording at full speed."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as hung:
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        sink = anchor_metrics.InfluxSink(anchor_config(url), timeout_ms=3000)
        in_write = threading.Event()

        class Probe:
            def write(self, lines: Sequence[str]) -> None:
                in_write.set()
                sink.write(lines)

            def close(self) -> None:
                sink.close()

        writer = MetricsWriter(Probe(), buffer_points=1000, flush_interval_ms=10, stats_tags={})
        writer.start()
        writer.record(point(0))
        assert in_write.wait(5)
        start = time.perf_counter()
        for i in range(100_000):
            writer.record(point(i))
        took = time.perf_counter() - start
        assert took < 5.0, took
        assert writer.stats().dropped_full >= 99_000
        t0 = time.perf_counter()
        writer.close(timeout_s=0.2)  # gives up on the stuck request instead of waiting
        assert time.perf_counter() - t0 < 1.0


class StatusHandler(http.server.BaseHTTPRequestHandler):
    status = 204

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"code":"invalid","message":"stand-in says no"}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


STATUSES = [(400, "refused"), (413, "refused"), (503, "kept"), (429, "kept"), (401, "kept")]


@pytest.mark.parametrize(("status", "outcome"), STATUSES)
def test_http_status_mapping(status: int, outcome: str) -> None:
    handler = type("Handler", (StatusHandler,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        config = gateway_metrics.MetricsConfig(url, "t", "o", "b", 100, 100)
        writer = gateway_metrics.open_writer(config, "wh-1", "gw-1")
        writer.record_all([point(1), point(2)])
        result = writer.flush_once()
        stats = writer.stats()
        if outcome == "refused":
            assert (result, stats.dropped_refused, stats.buffered) == (Flush.DONE, 2, 0)
        else:
            assert (result, stats.failed_writes, stats.buffered) == (Flush.FAILED, 1, 2)
    finally:
        server.shutdown()
        server.server_close()
