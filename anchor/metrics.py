"""The anchor's metrics: ``[metrics]`` config, the influxdb-client sink, and the points.

Writing goes through ``pledgewatch.metricpoint.MetricsWriter`` (bounded buffer, one flusher
thread, drops counted): ingest never waits for the TSDB. The point builders only read:

- ``ingest_points(worker, counts, now_ms)``: the worker's cumulative ingest counters;
- ``store_points(db, now_ms)``: log, witness and ledger progress, open alerts, devices' last
  contact (index-backed queries; run it on one worker per store, like the live reconciler,
  in the thread that owns ``db``);
- ``collateral_points(snapshot, book, now_ms)``: book stock of pledged lots and each loan's
  coverage, valued exactly as the COVERAGE rules value it.

docs/metrics.md is the schema (measurements, tags, fields, units).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from anchor.alerts.model import severity_name
from anchor.ingest import Reject
from anchor.loanbook import Loan, LoanBook, PledgeType
from anchor.reconcile.collateral import (
    LotPledge,
    StockIndex,
    by_loan,
    collateral_value,
    lot_pledges,
)
from anchor.reconcile.conditions import Rule, Severity
from anchor.reconcile.settings import day_of
from anchor.reconcile.snapshot import Snapshot
from anchor.store.db import Database, Tx
from pledgewatch.metricpoint import FieldValue, MetricsWriter, Point, SinkRefused, SinkUnavailable
from pledgewatch.tomlconf import Fields

if TYPE_CHECKING:
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import WriteApi

REFUSED_STATUSES = frozenset({400, 413, 422})  # the batch itself is bad: retrying cannot help
TIMEOUT_MS = 5_000


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    url: str  # http(s)://host:port of an InfluxDB 2 / VictoriaMetrics (/api/v2/write)
    token: str = field(repr=False)
    org: str
    bucket: str
    flush_interval_ms: int
    buffer_points: int


def parse_metrics(f: Fields) -> MetricsConfig | None:
    """The ``[metrics]`` table: pass ``root.table("metrics", required=False)``.

    None (metrics off) when it has no ``url``; problems go to the shared list.
    """
    url = f.optional_text("url")
    token = f.optional_text("token")
    org = f.optional_text("org")
    bucket = f.optional_text("bucket")
    flush_ms = f.integer("flush_interval_ms", 1000, low=10, high=3_600_000)
    buffer = f.integer("buffer_points", 10_000, low=100, high=10_000_000)
    f.finish()
    if url is None:
        if (token, org, bucket) != (None, None, None):
            f.problems.append(f"{f.path}.url: missing (token/org/bucket are set)")
        return None
    if not url.startswith(("http://", "https://")):
        f.problems.append(f"{f.path}.url: got {url!r}, want http://… or https://…")
    return MetricsConfig(
        url, token or "", org or "pledgewatch", bucket or "pledgewatch", flush_ms, buffer
    )


class InfluxSink:
    """A ``LineSink`` over influxdb-client's synchronous v2 write API (ms precision).

    influxdb-client is imported on the first write (metrics off: not needed). Its batching
    mode is not used: it queues without bound while the TSDB is down; ``MetricsWriter`` is
    the bounded buffer.
    """

    def __init__(self, config: MetricsConfig, timeout_ms: int = TIMEOUT_MS) -> None:
        self.config = config
        self.timeout_ms = timeout_ms
        self._client: InfluxDBClient | None = None
        self._api: WriteApi | None = None

    def _write_api(self) -> WriteApi:
        if self._api is None:
            from influxdb_client.client.influxdb_client import InfluxDBClient
            from influxdb_client.client.write_api import SYNCHRONOUS

            cfg = self.config
            self._client = InfluxDBClient(
                url=cfg.url, token=cfg.token, org=cfg.org, timeout=self.timeout_ms
            )
            self._api = self._client.write_api(write_options=SYNCHRONOUS)
        return self._api

    def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        cfg = self.config
        try:
            self._write_api().write(
                cfg.bucket,
                cfg.org,
                record=list(lines),
                # its WritePrecision constants are plain str, the parameter says WritePrecision
                write_precision=WritePrecision.MS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            message = f"HTTP {exc.status} from {cfg.url}: {exc.message}"
            if exc.status in REFUSED_STATUSES:
                raise SinkRefused(message) from exc
            raise SinkUnavailable(message) from exc
        except (HTTPError, OSError) as exc:
            raise SinkUnavailable(f"{cfg.url}: {exc}") from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()  # type: ignore[no-untyped-call]
            self._client = self._api = None


def open_writer(config: MetricsConfig, worker: str) -> MetricsWriter:
    """A writer for this worker (not started: call ``start()``; ``close()`` on shutdown)."""
    return MetricsWriter(
        InfluxSink(config),
        buffer_points=config.buffer_points,
        flush_interval_ms=config.flush_interval_ms,
        stats_tags={"component": "anchor", "worker": worker},
    )


def ingest_points(worker: str, counts: Counter[str], now_ms: int) -> list[Point]:
    """``pw_ingest`` and one ``pw_rejects`` per reason, from ``AnchorWorker.counts``."""
    rejected = {r.value: counts[f"rejected:{r.value}"] for r in Reject}
    totals: dict[str, FieldValue] = {
        "stored": counts["stored"],
        "duplicates": counts["duplicate"],
        "rejected": sum(rejected.values()),
    }
    return [
        Point("pw_ingest", {"worker": worker}, totals, now_ms),
        *(
            Point("pw_rejects", {"worker": worker, "reason": reason}, {"count": n}, now_ms)
            for reason, n in rejected.items()
        ),
    ]


def store_points(db: Database, now_ms: int) -> list[Point]:
    """``pw_log``, ``pw_alerts`` and ``pw_device`` from the store (reads only)."""
    tx = db.read()
    return [_log_point(tx, now_ms), *_alert_points(tx, now_ms), *_device_points(tx, now_ms)]


def _log_point(tx: Tx, now_ms: int) -> Point:
    (size,) = tx.one("SELECT size FROM log_state WHERE id = 1")
    (unsequenced,) = tx.one("SELECT COUNT(*) FROM events WHERE leaf_index IS NULL")
    fields: dict[str, FieldValue] = {"size": size, "unsequenced": unsequenced}
    latest = tx.one("SELECT size, created_ms FROM checkpoints ORDER BY size DESC LIMIT 1")
    if latest is not None:
        fields["checkpoint_size"] = latest[0]
        fields["checkpoint_age_ms"] = now_ms - latest[1]
    for name, column in (("witness", "cosigned_note"), ("ledger", "ledger_receipt")):
        done = tx.one(
            f"SELECT size FROM checkpoints WHERE {column} IS NOT NULL "  # noqa: S608
            "ORDER BY size DESC LIMIT 1"
        )
        done_size = 0 if done is None else done[0]
        behind = tx.one(
            "SELECT created_ms FROM checkpoints WHERE size > ? ORDER BY size LIMIT 1", (done_size,)
        )
        fields["witnessed_size" if name == "witness" else "anchored_size"] = done_size
        fields[f"{name}_lag_ms"] = 0 if behind is None else max(now_ms - behind[0], 0)
    return Point("pw_log", {}, fields, now_ms)


def _alert_points(tx: Tx, now_ms: int) -> list[Point]:
    """Every rule × severity, zeros included (a gauge must fall back to 0 when resolved)."""
    counts = {
        (rule, int(severity), state): n
        for rule, severity, state, n in tx.all(
            "SELECT rule, severity, state, COUNT(*) FROM alerts "
            "WHERE state IN ('open', 'acknowledged') GROUP BY rule, severity, state"
        )
    }
    points = []
    for rule in Rule:
        for severity in Severity:
            tags = {
                "rule": rule.value,
                "severity": severity_name(severity),
                "category": rule.category.value,
            }
            key = (rule.value, int(severity))
            fields: dict[str, FieldValue] = {
                "open": counts.get((*key, "open"), 0),
                "acknowledged": counts.get((*key, "acknowledged"), 0),
            }
            points.append(Point("pw_alerts", tags, fields, now_ms))
    return points


def _device_points(tx: Tx, now_ms: int) -> list[Point]:
    """Per device: its highest-seq event (chain_heads joined on the events index)."""
    rows = tx.all(
        "SELECT h.warehouse, h.gateway, h.device, h.max_seq, h.complete_seq, "
        "MAX(e.received_ms), MAX(e.ts_ms) FROM chain_heads h JOIN events e "
        "ON e.gateway = h.gateway AND e.device = h.device AND e.seq = h.max_seq "
        "GROUP BY h.warehouse, h.gateway, h.device, h.max_seq, h.complete_seq "
        "ORDER BY h.warehouse, h.gateway, h.device"
    )
    return [
        Point(
            "pw_device",
            {"warehouse": warehouse, "gateway": gateway, "device": device},
            {
                "last_seen_ms": received,
                "silent_ms": max(now_ms - received, 0),
                "last_event_ts_ms": signed_ts,
                "seq": max_seq,
                "unchained": max_seq - complete,
            },
            now_ms,
        )
        for warehouse, gateway, device, max_seq, complete, received, signed_ts in rows
    ]


def collateral_points(snapshot: Snapshot, book: LoanBook, now_ms: int) -> list[Point]:
    """``pw_bay_stock`` per stock line, ``pw_stock`` per pledge and ``pw_coverage`` per loan
    in force on ``now_ms``'s day."""
    day = day_of(now_ms)
    index = StockIndex(snapshot)
    pledges = lot_pledges(book)
    points = [
        Point(
            "pw_bay_stock",
            {"warehouse": line.warehouse, "bay": line.bay, "lot": line.lot, "sku": line.sku},
            {"book_qty": line.qty},
            now_ms,
        )
        for line in snapshot.stock
    ]
    for p in pledges:
        if p.loan.in_force(day):
            lines = index.lot(p.loan.warehouse, p.lot, p.sku)
            tags = {"warehouse": p.loan.warehouse, "loan": p.loan.loan_id, "lot": p.lot}
            points.append(_stock(tags, p.sku, sum(x.qty for x in lines), p.qty, now_ms))
    dynamic: Counter[tuple[str, str]] = Counter()
    for pledge in book.pledges:
        if pledge.lot is None:
            dynamic[(pledge.loan_id, pledge.sku)] += pledge.qty
    for (loan_id, sku), qty in sorted(dynamic.items()):
        loan = book.loan(loan_id)
        if loan is not None and loan.in_force(day):
            lines = index.by_sku.get((loan.warehouse, sku), [])
            tags = {"warehouse": loan.warehouse, "loan": loan_id}
            points.append(_stock(tags, sku, sum(x.qty for x in lines), qty, now_ms))
    mine = by_loan(pledges)
    for loan in book.loans:
        if loan.in_force(day):
            points.append(_coverage(book, loan, mine.get(loan.loan_id, []), index, day, now_ms))
    return points


def _stock(tags: dict[str, str], sku: str, book_qty: int, pledged: int, now_ms: int) -> Point:
    fields: dict[str, FieldValue] = {"book_qty": book_qty, "pledged_qty": pledged}
    return Point("pw_stock", {**tags, "sku": sku}, fields, now_ms)


def _coverage(
    book: LoanBook,
    loan: Loan,
    pledges: Sequence[LotPledge],
    index: StockIndex,
    day: dt.date,
    now_ms: int,
) -> Point:
    # the valuation the COVERAGE rules use, so a dashboard never disagrees with an alert
    value, _, unpriced = collateral_value(book, loan, pledges, index, day)
    fields: dict[str, FieldValue] = {
        "value": float(value),
        "outstanding": float(loan.outstanding),
        "warning": float(loan.warning_ratio),
        "liquidation": float(loan.liquidation_ratio),
        "unpriced_skus": len(unpriced),
    }
    if loan.outstanding > 0:
        fields["coverage"] = float(value / loan.outstanding)
    if loan.pledge_type is PledgeType.DYNAMIC and loan.min_value > 0:
        fields["min_value"] = float(loan.min_value)
    tags = {"warehouse": loan.warehouse, "loan": loan.loan_id, "currency": loan.currency}
    return Point("pw_coverage", tags, fields, now_ms)
