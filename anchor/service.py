"""The anchor worker's main loop: ingest batches, receipts, sequencing, checkpoints, gaps.

One thread owns this worker's database connection. Per turn it takes up to ``BATCH``
messages from the subscriber, stores or quarantines them in one transaction, and only after
the commit acknowledges them to the broker and sends the receipts. Every ``SEQUENCE_EVERY_S``
it appends pending entries to the log and cuts a checkpoint when due; every few seconds it
reloads the key registry (revocations by the CLI take effect) and scans for chain gaps.
Witnessing and ledger anchoring run in their own thread (``anchor.publish``), so a slow
witness or ledger never slows ingest.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter

from anchor.chain import gap_scan
from anchor.config import AnchorConfig
from anchor.ingest import Ingestor, Message
from anchor.log import Sequencer
from anchor.metrics import ingest_points
from anchor.registry import load_keys
from anchor.store.db import Database
from anchor.subscriber import Subscriber
from pledgewatch.metricpoint import MetricsWriter
from pledgewatch.receipts import Receipt, sign_receipt
from pledgewatch.signing import SigningKey
from pledgewatch.topics import receipts_topic

log = logging.getLogger(__name__)

BATCH = 500
SEQUENCE_EVERY_S = 0.1
HOUSEKEEPING_EVERY_S = 2.0
MAX_RECEIPT_ITEMS = 500


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class AnchorWorker:
    def __init__(
        self, config: AnchorConfig, key: SigningKey, metrics: MetricsWriter | None = None
    ) -> None:
        self.config = config
        self.key = key
        self.db = Database(config.anchor.store)
        self.subscriber = Subscriber(config.mqtt, config.anchor.worker)
        self.sequencer = Sequencer(self.db, config.anchor.origin, key, config.log)
        self.ingestor = Ingestor({}, config.anchor.worker)
        self.counts: Counter[str] = Counter()
        self.metrics = metrics
        self._next_sequence = 0.0
        self._next_housekeeping = 0.0

    def run(self, stop: threading.Event) -> None:
        self.db.open()
        try:
            self._reload_keys()
            self.subscriber.start()
            while not stop.is_set():
                self.turn()
            self._drain_and_sequence()
        finally:
            self.subscriber.stop()
            self.db.close()

    def turn(self) -> None:
        batch = self._take(timeout=0.02)
        if batch:
            self.ingest(batch)
        mono = time.monotonic()
        if mono >= self._next_sequence:
            self._next_sequence = mono + SEQUENCE_EVERY_S
            while self.sequencer.step(now_ms()) > 0:
                pass
            self.sequencer.checkpoint_if_due(now_ms())
        if mono >= self._next_housekeeping:
            self._next_housekeeping = mono + HOUSEKEEPING_EVERY_S
            self._reload_keys()
            if self.metrics is not None:
                self.metrics.record_all(
                    ingest_points(self.config.anchor.worker, self.counts, now_ms())
                )
            with self.db.transaction() as tx:
                found = gap_scan(tx, now_ms(), self.config.log.gap_timeout_s * 1000)
            if found:
                log.warning("recorded %d chain gap(s)", found)

    def _take(self, timeout: float) -> list[Message]:
        inbox = self.subscriber.inbox
        try:
            first = inbox.get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < BATCH:
            try:
                batch.append(inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def ingest(self, batch: list[Message]) -> None:
        stamp = now_ms()
        verified = self.ingestor.verify_all(batch)  # CPU work outside the transaction
        with self.db.transaction() as tx:
            result = self.ingestor.process(tx, batch, stamp, verified)
        self.subscriber.ack(batch)
        self.counts.update(result.counts)
        for (warehouse, gateway), items in result.receipts.items():
            for start in range(0, len(items), MAX_RECEIPT_ITEMS):
                receipt = Receipt(
                    self.key.key_id,
                    warehouse,
                    gateway,
                    stamp,
                    tuple(items[start : start + MAX_RECEIPT_ITEMS]),
                )
                self.subscriber.publish(
                    receipts_topic(warehouse, gateway), sign_receipt(receipt, self.key)
                )
        rejected = {k: v for k, v in result.counts.items() if k.startswith("rejected:")}
        if rejected:
            log.warning("quarantined: %s", rejected)

    def _reload_keys(self) -> None:
        self.ingestor.keys = load_keys(self.db.read())

    def _drain_and_sequence(self) -> None:
        while batch := self._take(timeout=0.0):
            self.ingest(batch)
        while self.sequencer.step(now_ms()) > 0:
            pass
