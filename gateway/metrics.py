"""The gateway's metrics: ``[metrics]`` config, the influxdb-client sink, and ``pw_gateway``.

Writing goes through ``pledgewatch.metricpoint.MetricsWriter`` (bounded buffer, one flusher
thread, drops counted): the main loop never waits for the TSDB, and a gateway without an
uplink loses metrics (counted), never events. influxdb-client is imported only on the first
write, so a gateway with metrics off does not need it. docs/metrics.md is the schema.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gateway.health import GatewayHealth, HealthState
from pledgewatch.metricpoint import FieldValue, MetricsWriter, Point, SinkRefused, SinkUnavailable
from pledgewatch.tomlconf import Fields

if TYPE_CHECKING:
    from influxdb_client.client.influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import WriteApi

REFUSED_STATUSES = frozenset({400, 413, 422})  # the batch itself is bad: retrying cannot help
TIMEOUT_MS = 5_000
STATE_LEVEL = {
    HealthState.OK: 0,
    HealthState.DEGRADED: 1,
    HealthState.ALARM: 2,
    HealthState.OFFLINE: 3,
}


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

    None (metrics off) when it has no ``url``; problems go to the shared list. Defaults suit
    a Raspberry Pi: a flush every 10 s, at most 2,000 points kept while the uplink is down.
    """
    url = f.optional_text("url")
    token = f.optional_text("token")
    org = f.optional_text("org")
    bucket = f.optional_text("bucket")
    flush_ms = f.integer("flush_interval_ms", 10_000, low=100, high=3_600_000)
    buffer = f.integer("buffer_points", 2_000, low=10, high=1_000_000)
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
    """A ``LineSink`` over influxdb-client's synchronous v2 write API (ms precision)."""

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


def open_writer(config: MetricsConfig, warehouse: str, gateway: str) -> MetricsWriter:
    """A writer for this gateway (not started: call ``start()``; ``close()`` on shutdown)."""
    return MetricsWriter(
        InfluxSink(config),
        buffer_points=config.buffer_points,
        flush_interval_ms=config.flush_interval_ms,
        stats_tags={"component": "gateway", "warehouse": warehouse, "gateway": gateway},
    )


def read_counters(conn: sqlite3.Connection) -> dict[str, int]:
    """The state database's durable counters (they survive restarts)."""
    return {
        str(name): int(value) for name, value in conn.execute("SELECT name, value FROM counters")
    }


def gateway_points(health: GatewayHealth, counters: Mapping[str, int]) -> list[Point]:
    """``pw_gateway`` at ``health.ts_ms`` from ``GatewayService.health()`` and the counters."""
    fields: dict[str, FieldValue] = {
        "outbox_depth": health.outbox_depth,
        "outbox_capacity": health.outbox_capacity,
        "oldest_unsent_age_ms": health.oldest_unsent_age_ms or 0,
        "connected": health.connected,
        "state": STATE_LEVEL[health.state],
        "alarms": len(health.alarms),
        "events_built": counters.get("events_built", 0),
        "receipts": counters.get("receipted", 0),
        "receipt_unknown": counters.get("receipt_unknown", 0),
        "malformed": _total(counters, "malformed:"),
        "invalid_readings": _total(counters, "invalid_reading:"),
    }
    if health.last_receipt_ms is not None:
        fields["last_receipt_ms"] = health.last_receipt_ms
    tags = {"warehouse": health.warehouse, "gateway": health.gateway}
    return [Point("pw_gateway", tags, fields, health.ts_ms)]


def _total(counters: Mapping[str, int], prefix: str) -> int:
    return sum(value for name, value in counters.items() if name.startswith(prefix))
