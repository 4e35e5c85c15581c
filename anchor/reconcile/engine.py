"""Wiring the reconciler to the store: inputs at a time, the batch run, the live follower.

- ``inputs_at(db, at_ms, bank_key)``: the loan book in force at ``at_ms``, the release tokens
  that verify with the bank's release key (others are ignored and logged: an unverifiable
  token authorises nothing), the chain records, and bad-signature counts per warehouse.
- ``reconcile_store(db, at_ms, …)``: the batch mode — a pandas snapshot over every logged event
  up to ``at_ms``, then the rules.
- ``LiveReconciler``: the continuous mode. It follows the *log* (events in ``leaf_index``
  order, so every worker's events are seen, exactly once), applies them to an
  ``IncrementalState``, evaluates the rules whenever something arrived (and at least every
  ``idle_evaluate_ms`` for time-based rules such as DEVICE_SILENT), and hands the conditions
  to the alert lifecycle. Run it on one worker per store (``[reconcile] enabled``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from anchor.alerts.lifecycle import apply_conditions
from anchor.alerts.model import Scope, Transition
from anchor.errors import AnchorError
from anchor.loanbook import LoanBook
from anchor.loans import book_at, book_version_at, read_version
from anchor.metrics import collateral_points, store_points
from anchor.reconcile.batch import events_frame, snapshot_from_frame
from anchor.reconcile.conditions import Condition
from anchor.reconcile.integrity import CHAIN_COLUMNS, ChainRecordRow
from anchor.reconcile.rules import evaluate
from anchor.reconcile.settings import RuleSettings
from anchor.reconcile.snapshot import Snapshot, StateConfig
from anchor.reconcile.state import IncrementalState
from anchor.releases import list_tokens
from anchor.store.db import Database
from pledgewatch.errors import PledgewatchError
from pledgewatch.events import SignedEvent
from pledgewatch.metricpoint import MetricsWriter
from pledgewatch.release import ReleaseToken, parse_token
from pledgewatch.topics import parse_topic

log = logging.getLogger(__name__)

EMPTY_BOOK = LoanBook((), (), (), version=0)
FOLLOW_BATCH = 5000


@dataclass(frozen=True, slots=True)
class Inputs:
    book: LoanBook
    tokens: tuple[ReleaseToken, ...]
    chain_records: tuple[ChainRecordRow, ...]
    bad_signatures: Mapping[str, int]


def verified_tokens(
    wires: list[bytes],
    bank_key: bytes | None,
    seen: dict[bytes, ReleaseToken | None] | None = None,
) -> tuple[ReleaseToken, ...]:
    """The tokens among ``wires`` whose signature verifies with ``bank_key``. ``seen`` (the
    live reconciler's) remembers each wire's outcome: a token is verified once, not on every
    step (tokens are never edited; a different wire is a different token)."""
    if bank_key is None:
        if wires:
            log.warning(
                "no [bank] release_public_key configured: %d release tokens ignored", len(wires)
            )
        return ()
    memo: dict[bytes, ReleaseToken | None] = {} if seen is None else seen
    out = []
    for wire in wires:
        if wire not in memo:
            try:
                memo[wire] = parse_token(wire, bank_key)
            except PledgewatchError as exc:
                log.error("release token ignored (does not verify): %s", exc)
                memo[wire] = None
        token = memo[wire]
        if token is not None:
            out.append(token)
    return tuple(out)


@dataclass
class InputsCache:
    """What ``inputs_at`` may reuse between live steps: the parsed book of one (immutable)
    version, and each token wire's verification outcome."""

    version: int | None = None
    book: LoanBook = EMPTY_BOOK
    tokens: dict[bytes, ReleaseToken | None] = field(default_factory=dict)

    def book_at(self, db: Database, at_ms: int) -> LoanBook:
        tx = db.read()
        version = book_version_at(tx, at_ms)
        if version is None:
            return EMPTY_BOOK
        if version != self.version:
            self.version, self.book = version, read_version(tx, version)
        return self.book


def bad_signature_counts(rows: list[tuple[object, ...]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (topic,) in rows:
        try:
            warehouse = parse_topic(str(topic)).warehouse
        except PledgewatchError:
            continue
        counts[warehouse] = counts.get(warehouse, 0) + 1
    return counts


def inputs_at(
    db: Database, at_ms: int, bank_key: bytes | None, cache: InputsCache | None = None
) -> Inputs:
    tx = db.read()
    records = tx.all(
        f"SELECT {', '.join(CHAIN_COLUMNS)} FROM chain_records "  # noqa: S608
        "WHERE created_ms <= ? ORDER BY id",
        (at_ms,),
    )
    bad = tx.all(
        "SELECT topic FROM quarantine WHERE reason = 'bad_signature' AND received_ms <= ?", (at_ms,)
    )
    return Inputs(
        book=(book_at(db, at_ms) or EMPTY_BOOK) if cache is None else cache.book_at(db, at_ms),
        tokens=verified_tokens(list_tokens(db), bank_key, None if cache is None else cache.tokens),
        chain_records=tuple(ChainRecordRow.from_row(r) for r in records),
        bad_signatures=bad_signature_counts(bad),
    )


def logged_events(db: Database, at_ms: int | None = None) -> list[tuple[str, SignedEvent]]:
    rows = db.read().all(
        "SELECT event_id, wire FROM events WHERE leaf_index IS NOT NULL ORDER BY leaf_index"
    )
    out = []
    for event_id, wire in rows:
        signed = SignedEvent.from_wire(bytes(wire))
        if at_ms is None or signed.event.ts_ms <= at_ms:
            out.append((str(event_id), signed))
    return out


def conditions_for(
    snapshot: Snapshot, inputs: Inputs, settings: RuleSettings, at_ms: int
) -> list[Condition]:
    return evaluate(
        snapshot,
        inputs.book,
        inputs.tokens,
        inputs.chain_records,
        settings,
        at_ms,
        bad_signatures=inputs.bad_signatures,
    )


def reconcile_store(
    db: Database, at_ms: int, state: StateConfig, settings: RuleSettings, bank_key: bytes | None
) -> list[Condition]:
    """The batch mode over the store: what the rules say at ``at_ms`` (no alert side effects)."""
    events = logged_events(db, at_ms)
    frame = events_frame((event_id, signed.event) for event_id, signed in events)
    snapshot = snapshot_from_frame(frame, at_ms, state)
    return conditions_for(snapshot, inputs_at(db, at_ms, bank_key), settings, at_ms)


def scope_of(snapshot: Snapshot, book: LoanBook, conditions: list[Condition]) -> Scope:
    """Every warehouse this run looked at: alerts elsewhere are left alone."""
    warehouses = set(snapshot.warehouses()) | {loan.warehouse for loan in book.loans}
    return Scope.of(warehouses | {c.warehouse for c in conditions})


class LiveReconciler:
    """Follows the log and keeps alerts current. One instance per store (see module doc)."""

    def __init__(
        self,
        db: Database,
        state: StateConfig,
        settings: RuleSettings,
        bank_key: bytes | None,
        idle_evaluate_ms: int = 5000,
    ) -> None:
        self.db = db
        self.settings = settings
        self.bank_key = bank_key
        self.idle_evaluate_ms = idle_evaluate_ms
        self.state = IncrementalState(state)
        self.cursor = 0
        self._last_evaluate = 0
        self.last_book: LoanBook = EMPTY_BOOK
        self._inputs = InputsCache()

    def follow(self) -> int:
        """Apply newly logged events in log order; returns how many."""
        rows = self.db.read().all(
            "SELECT leaf_index, event_id, wire FROM events WHERE leaf_index >= ? "
            "ORDER BY leaf_index LIMIT ?",
            (self.cursor, FOLLOW_BATCH),
        )
        for index, event_id, wire in rows:
            self.state.apply(SignedEvent.from_wire(bytes(wire)).event, str(event_id))
            self.cursor = int(index) + 1
        return len(rows)

    def step(self, now_ms: int, stop: threading.Event | None = None) -> list[Transition]:
        """Follow the log, then evaluate. ``stop`` set: return between batches — catching up
        on a long log (about a minute per million events at start) must not delay shutdown."""
        applied = 0
        while (n := self.follow()) > 0:
            applied += n
            if stop is not None and stop.is_set():
                return []
        if not applied and now_ms - self._last_evaluate < self.idle_evaluate_ms:
            return []
        self._last_evaluate = now_ms
        snapshot = self.state.snapshot()
        inputs = inputs_at(self.db, now_ms, self.bank_key, self._inputs)
        self.last_book = inputs.book
        conditions = conditions_for(snapshot, inputs, self.settings, now_ms)
        scope = scope_of(snapshot, inputs.book, conditions)
        return apply_conditions(self.db, conditions, now_ms, scope=scope)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


METRICS_EVERY_MS = 5000


def serve(
    store: str,
    state: StateConfig,
    settings: RuleSettings,
    bank_key: bytes | None,
    every_ms: int,
    stop: threading.Event,
    metrics: MetricsWriter | None = None,
    nudge: threading.Event | None = None,
) -> None:
    """The live reconciler's thread: its own connection, a step every ``every_ms``; sets
    ``nudge`` (the webhook deliverer's) when a step changed an alert."""
    db = Database(store)
    db.open()
    try:
        live = LiveReconciler(db, state, settings, bank_key)
        next_metrics = 0
        while not stop.wait(every_ms / 1000):
            try:
                transitions = live.step(now_ms(), stop)
                for transition in transitions:
                    log.warning("alert %s: %s", transition.kind.value, transition.alert.message)
                if transitions and nudge is not None:
                    nudge.set()
                if metrics is not None and now_ms() >= next_metrics:
                    next_metrics = now_ms() + METRICS_EVERY_MS
                    metrics.record_all(
                        store_points(db, now_ms())
                        + collateral_points(live.state.snapshot(), live.last_book, now_ms())
                    )
            except (PledgewatchError, AnchorError) as exc:
                log.error("reconciliation pass failed, will retry: %s", exc)
    finally:
        db.close()
