"""The gateway's main loop: sensors → signed events in the outbox → MQTT → receipts → ack.

One thread (this loop) owns the state database. Per turn it:

1. takes what paho's thread reported (connects, disconnects, receipts, refused publishes);
2. polls sensors — only while fewer than a batch of readings wait (push back when full);
3. adds due heartbeats (signed HEARTBEAT events, for the gateway and each sensor);
4. signs and stores waiting readings in one transaction (``EventBuilder``);
5. publishes outbox entries in order, at most ``max_inflight`` without receipt; after a
   (re)connect, or when the oldest published event has had no receipt for
   ``resend_after_s``, it goes back and republishes every unreceipted event in order
   (the anchor stores by event id, so a re-delivery is harmless);
6. publishes health.

Shutdown order: stop polling → store what was read → publish final health → disconnect →
close sensors → close the database. Nothing in the outbox is touched by shutdown or reload.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from devices.base import Malformed, Reading, Sensor, SensorConfig
from gateway.builder import EventBuilder
from gateway.config import GatewayConfig
from gateway.errors import GatewayError, OutboxFull
from gateway.health import (
    Alarm,
    GatewayHealth,
    health_file,
    offline_message,
    ordered,
    state_of,
    write_health_file,
)
from gateway.metrics import gateway_points, read_counters
from gateway.outbox import Outbox
from gateway.publisher import Inbound, Publisher, Signal
from gateway.store import GatewayStore, Identity
from pledgewatch.errors import PledgewatchError
from pledgewatch.events import Kind
from pledgewatch.metricpoint import MetricsWriter
from pledgewatch.receipts import ReceiptStatus, parse_receipt
from pledgewatch.signing import SigningKey
from pledgewatch.topics import events_topic

log = logging.getLogger(__name__)

# Drivers whose input already carries the devices' heartbeats (simulators, recorded files).
SELF_HEARTBEAT_DRIVERS = frozenset({"sim", "jsonl"})


@dataclass(frozen=True, slots=True)
class Clock:
    wall_ms: Callable[[], int]
    monotonic: Callable[[], float]


SYSTEM_CLOCK = Clock(lambda: time.time_ns() // 1_000_000, time.monotonic)


@dataclass(frozen=True, slots=True)
class BoundSensor:
    config: SensorConfig
    sensor: Sensor


class GatewayService:
    def __init__(
        self,
        config: GatewayConfig,
        key: SigningKey,
        sensors: list[BoundSensor],
        clock: Clock = SYSTEM_CLOCK,
        reload_requested: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.sensors = sensors
        self.clock = clock
        ident = config.gateway
        self.store = GatewayStore(ident.state_db)
        self.outbox = Outbox(self.store, config.outbox.max_events)
        self.builder = EventBuilder(self.store, self.outbox, key, ident.warehouse, ident.id)
        self.publisher = Publisher(config.mqtt, ident.warehouse, ident.id)
        self.topic = events_topic(ident.warehouse, ident.id)
        self.pending: collections.deque[Reading] = collections.deque()
        self.inflight: dict[str, float] = {}
        self.cursor = 0
        # Set by the main loop when it has handled CONNECTED (and rewound), cleared on
        # DISCONNECTED: paho's own flag flips earlier, which would publish a batch twice.
        self.link_up = False
        self.alarms: set[Alarm] = set()
        self.last_receipt_ms: int | None = None
        self._next_heartbeat = 0.0
        self._next_health = 0.0
        self._sensor_failed: set[str] = set()
        self._reload_requested = reload_requested or threading.Event()
        self.metrics: MetricsWriter | None = None  # set by the entry point when configured
        # Set by the entry point: re-read the config file; open a config's sensors.
        self.reloader: Callable[[], GatewayConfig] | None = None
        self.sensor_builder: Callable[[GatewayConfig], list[BoundSensor]] | None = None

    def request_reload(self) -> None:
        """Safe to call from a signal handler: the loop reloads at its next turn."""
        self._reload_requested.set()

    def run(self, stop: threading.Event) -> None:
        ident = self.config.gateway
        self.store.open(Identity(ident.warehouse, ident.id, self.key.key_id))
        try:
            self.publisher.start(offline_message(ident.warehouse, ident.id))
            while not stop.is_set():
                busy = self.turn()
                if not busy:
                    self._wait_inbox(0.02)
            self._shutdown()
        finally:
            self.store.close()

    def turn(self) -> bool:
        """One pass of the loop; True if it did work (so the loop should not sleep)."""
        self._drain_inbox()
        if self._reload_requested.is_set():
            self._reload()
        if len(self.pending) < self.config.outbox.batch_size:
            self._poll_sensors()
        self._heartbeats()
        stored = self._store_pending()
        sent = self._send()
        self._health()
        return stored > 0 or sent > 0

    def _reload(self) -> None:
        """Apply a re-read config: sensors and intervals only. Identity, key, broker and
        outbox settings need a restart; the outbox and chain heads are never touched."""
        self._reload_requested.clear()
        if self.reloader is None or self.sensor_builder is None:
            return
        try:
            new = self.reloader()
        except (GatewayError, PledgewatchError) as exc:
            log.error("config reload refused, keeping the running config: %s", exc)
            return
        changed = [
            n
            for n in ("gateway", "anchor", "mqtt", "outbox")
            if getattr(new, n) != getattr(self.config, n)
        ]
        if changed:
            log.error(
                "config reload: [%s] changed; those need a restart and were not applied",
                "], [".join(changed),
            )
        for bound in self.sensors:  # close first: a GPIO pin or serial port can be reused
            bound.sensor.close()
        new = replace(
            self.config,
            sensors=new.sensors,
            heartbeat_interval_s=new.heartbeat_interval_s,
            health_interval_s=new.health_interval_s,
        )
        try:
            self.sensors = self.sensor_builder(new)
        except (GatewayError, PledgewatchError) as exc:
            log.error("config reload: new sensors failed (%s); reopening the old ones", exc)
            self.sensors = self.sensor_builder(self.config)
            return
        self.config = new
        log.info("config reloaded: %d sensors", len(self.sensors))

    def _wait_inbox(self, timeout: float) -> None:
        try:
            item = self.publisher.inbox.get(timeout=timeout)
        except queue.Empty:
            return
        self._handle(item)

    def _drain_inbox(self) -> None:
        inbox = self.publisher.inbox
        items = []
        while not inbox.empty():
            items.append(inbox.get_nowait())
        self._handle_all(items)

    def _handle(self, item: Inbound) -> None:
        self._handle_all([item])

    def _handle_all(self, items: list[Inbound]) -> None:
        """Handle signals in order; all receipts among them are acknowledged in one commit."""
        released: list[str] = []
        for item in items:
            if item.signal is Signal.RECEIPT:
                released.extend(self._receipt_ids(item.payload))
            else:
                self._signal(item)
        if released:
            self.outbox.ack(released, self.clock.wall_ms())
            for event_id in released:
                self.inflight.pop(event_id, None)
            self.last_receipt_ms = self.clock.wall_ms()

    def _signal(self, item: Inbound) -> None:
        if item.signal is Signal.CONNECTED:
            log.info("connected to broker (%s); resending unreceipted events", item.detail)
            self.alarms.discard(Alarm.BROKER_DOWN)
            self._rewind()
            self.link_up = True
        elif item.signal is Signal.DISCONNECTED:
            log.warning("broker connection lost: %s", item.detail)
            self.alarms.add(Alarm.BROKER_DOWN)
            self.link_up = False
        elif item.signal is Signal.PUBLISH_REFUSED:
            log.error("broker refused a publish on %s: %s", self.topic, item.detail)
            self.alarms.add(Alarm.PUBLISH_REFUSED)

    def _receipt_ids(self, payload: bytes) -> list[str]:
        """The event ids a verified receipt releases; [] (and an alarm) if it is not valid."""
        ident = self.config.gateway
        try:
            receipt = parse_receipt(payload, self.config.anchor.public_key)
        except PledgewatchError as exc:
            log.warning("ignored a message on the receipt topic: %s", exc)
            self.alarms.add(Alarm.RECEIPT_INVALID)
            return []
        if (receipt.warehouse, receipt.gateway) != (ident.warehouse, ident.id):
            log.warning("ignored a receipt for %s/%s", receipt.warehouse, receipt.gateway)
            self.alarms.add(Alarm.RECEIPT_INVALID)
            return []
        for item in receipt.items:
            if item.status is ReceiptStatus.QUARANTINED:
                log.error("anchor quarantined event %s: %s", item.event_id, item.reason)
                self.alarms.add(Alarm.QUARANTINED)
        return [item.event_id for item in receipt.items]

    def _rewind(self) -> None:
        self.cursor = 0
        self.inflight.clear()

    def _poll_sensors(self) -> None:
        now = self.clock.wall_ms()
        malformed: list[Malformed] = []
        for bound in self.sensors:
            device = bound.config.device
            try:
                results = bound.sensor.poll(now)
            except Exception:
                log.exception("sensor %s failed", device)
                self._sensor_failed.add(device)
                continue
            for item in results:
                if isinstance(item, Malformed):
                    malformed.append(item)
                else:
                    self.pending.append(item)
        if malformed:
            self._count_malformed(malformed)

    def _count_malformed(self, items: list[Malformed]) -> None:
        with self.store.transaction() as conn:
            for item in items:
                log.warning(
                    "malformed reading from %s: %s (raw %r)",
                    item.device,
                    item.reason,
                    item.raw[:80],
                )
                self.store.bump(conn, f"malformed:{item.device}")
        self.alarms.add(Alarm.INVALID_READINGS)

    def _heartbeats(self) -> None:
        mono = self.clock.monotonic()
        if mono < self._next_heartbeat:
            return
        self._next_heartbeat = mono + self.config.heartbeat_interval_s
        now = self.clock.wall_ms()
        devices = [self.config.gateway.id] + [
            b.config.device
            for b in self.sensors
            if b.config.driver not in SELF_HEARTBEAT_DRIVERS
            and b.config.device not in self._sensor_failed
        ]
        if self._sensor_failed:
            self.alarms.add(Alarm.SENSOR_FAILED)
        else:
            self.alarms.discard(Alarm.SENSOR_FAILED)
        self._sensor_failed.clear()
        self.pending.extend(Reading(device=d, kind=Kind.HEARTBEAT, ts_ms=now) for d in devices)

    def _store_pending(self) -> int:
        if not self.pending:
            return 0
        size = min(len(self.pending), self.config.outbox.batch_size)
        batch = [self.pending.popleft() for _ in range(size)]
        try:
            result = self.builder.append(batch, self.clock.wall_ms())
        except OutboxFull as exc:
            self.pending.extendleft(reversed(batch))
            if Alarm.OUTBOX_FULL not in self.alarms:
                log.error("%s; pushing back on sensors", exc)
            self.alarms.add(Alarm.OUTBOX_FULL)
            return 0
        self.pending.extendleft(reversed(result.deferred))
        for bad in result.invalid:
            log.warning("reading from %s not signed: %s", bad.reading.device, bad.reason)
            self.alarms.add(Alarm.INVALID_READINGS)
        if result.accepted and not result.deferred:
            self.alarms.discard(Alarm.OUTBOX_FULL)
        return len(result.accepted)

    def _send(self) -> int:
        if not (self.link_up and self.publisher.connected):
            return 0
        mono = self.clock.monotonic()
        if self.inflight:
            oldest = next(iter(self.inflight.values()))
            if mono - oldest > self.config.mqtt.resend_after_s:
                log.warning(
                    "no receipt for %d events after %ss; resending in order",
                    len(self.inflight),
                    self.config.mqtt.resend_after_s,
                )
                self._rewind()
        window = self.config.mqtt.max_inflight - len(self.inflight)
        if window <= 0:
            return 0
        sent = 0
        for entry in self.outbox.peek(self.cursor, min(window, 500)):
            if not self.publisher.publish(self.topic, entry.wire):
                break
            self.inflight[entry.event_id] = mono
            self.cursor = entry.pos
            sent += 1
        return sent

    def health(self) -> GatewayHealth:
        stats = self.outbox.stats()
        now = self.clock.wall_ms()
        age = None if stats.oldest_created_ms is None else now - stats.oldest_created_ms
        if age is not None and age > self.config.outbox.max_age_s * 1000:
            self.alarms.add(Alarm.OUTBOX_STALE)
        else:
            self.alarms.discard(Alarm.OUTBOX_STALE)
        ident = self.config.gateway
        return GatewayHealth(
            state=state_of(self.alarms),
            alarms=ordered(self.alarms),
            warehouse=ident.warehouse,
            gateway=ident.id,
            ts_ms=now,
            connected=self.publisher.connected,
            outbox_depth=stats.depth,
            outbox_capacity=stats.capacity,
            oldest_unsent_age_ms=age,
            last_receipt_ms=self.last_receipt_ms,
        )

    def _health(self) -> None:
        mono = self.clock.monotonic()
        if mono < self._next_health:
            return
        self._next_health = mono + self.config.health_interval_s
        health = self.health()
        write_health_file(health_file(self.config.gateway.state_db), health)
        if self.publisher.connected:
            self.publisher.publish(self.publisher.health_topic, health.to_json(), retain=True)
        if self.metrics is not None:  # never blocks: a bounded buffer, flushed by its thread
            self.metrics.record_all(gateway_points(health, read_counters(self.store.conn)))
        # Transient alarms are reported once per health interval, then cleared.
        self.alarms -= {
            Alarm.INVALID_READINGS,
            Alarm.RECEIPT_INVALID,
            Alarm.QUARANTINED,
            Alarm.PUBLISH_REFUSED,
        }

    def _shutdown(self) -> None:
        self._drain_inbox()
        while self.pending:
            before = len(self.pending)
            try:
                self._store_pending()
            except GatewayError:
                break
            if len(self.pending) == before:
                break
        if self.pending:
            log.error(
                "%d readings could not be stored before shutdown (outbox full)", len(self.pending)
            )
        ident = self.config.gateway
        self.publisher.stop(offline_message(ident.warehouse, ident.id))
        for bound in self.sensors:
            bound.sensor.close()
