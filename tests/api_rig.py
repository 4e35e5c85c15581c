"""A real store for the read API tests, and the API server on a random loopback port.

`build_store(url, folder)` fills an anchor store the way production does: a gateway key is
enrolled, signed LOAD/UNLOAD events of an RFID portal go through the `Ingestor` and the
`Sequencer` (which cuts a signed checkpoint per batch), the loan book is saved through the
loan-book code, and the `LiveReconciler` raises alerts from the real rules.

The book (warehouse wh-1, steel-coil at 10 000.00 CNY, warning line 1.30, liquidation 1.10):

    L-OK      100 units of WR-1 pledged, stock 100, outstanding 500 000.00: 2.0000 ok
    L-WARN     50 units of WR-2 pledged, stock  50, outstanding 400 000.00: 1.2500 warning
    L-BREACH   80 units of WR-3 pledged, 40 unloaded without a release token,
               outstanding 500 000.00: 400 000.00 / 500 000.00 = 0.8000 breach

So the reconciler opens COVERAGE_WARNING (L-WARN), COVERAGE_BREACH, SHORTFALL and
UNAUTHORIZED_RELEASE (L-BREACH), with the unload's event id as evidence.
"""

from __future__ import annotations

import datetime as dt
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from anchor import keyfile
from anchor.api import tokens
from anchor.api.server import ApiServer
from anchor.api.service import ApiService
from anchor.api.tokens import Role
from anchor.config import LogSection
from anchor.ingest import Ingestor, Message
from anchor.loanbook import Loan, LoanBook, Pledge, PledgeType, Price
from anchor.loans import save_book
from anchor.log import Sequencer
from anchor.reconcile.engine import LiveReconciler
from anchor.reconcile.settings import RuleSettings
from anchor.reconcile.snapshot import StateConfig
from anchor.registry import enrol, load_keys
from anchor.statement import LogTrust
from anchor.store.db import Database
from anchor.store.schema import migrate
from pledgewatch.events import ZERO_HASH, Event, Kind, SignedEvent
from pledgewatch.signing import SigningKey, sign_event
from pledgewatch.topics import events_topic

ORIGIN = "bank.example/api-test"
WH, GW = "wh-1", "gw-1"
HOUR = 3_600_000


def at(day: int, hour: int = 0) -> int:
    """Milliseconds of 2026-03-<day> <hour>:00 UTC (day 0 = Feb 28)."""
    return (dt.date(2026, 3, 1) - dt.date(1970, 1, 1)).days * 86_400_000 + (
        (day - 1) * 24 + hour
    ) * HOUR


NOW = at(5, 12)
START, END = dt.date(2026, 3, 1), dt.date(2026, 12, 31)


def loan(loan_id: str, outstanding: str, borrower: str) -> Loan:
    return Loan(
        loan_id=loan_id,
        borrower=borrower,
        warehouse=WH,
        currency="CNY",
        outstanding=Decimal(outstanding),
        start=START,
        end=END,
        pledge_type=PledgeType.STATIC,
        advance_rate=Decimal("0.70"),
        warning_ratio=Decimal("1.30"),
        liquidation_ratio=Decimal("1.10"),
        min_value=Decimal("0.00"),
    )


BOOK = LoanBook(
    loans=(
        loan("L-OK", "500000.00", "Harbour Grain Co"),
        loan("L-WARN", "400000.00", 'Jinhai <b>Steel</b> & "Sons"'),
        loan("L-BREACH", "500000.00", "Riverside Metals"),
    ),
    pledges=(
        Pledge("L-OK", "WR-1", "steel-coil", 100),
        Pledge("L-WARN", "WR-2", "steel-coil", 50),
        Pledge("L-BREACH", "WR-3", "steel-coil", 80),
    ),
    prices=(Price("steel-coil", dt.date(2026, 2, 27), Decimal("10000.00")),),
    version=0,
)


@dataclass
class Portal:
    key: SigningKey
    seq: int = 0
    prev: str = ZERO_HASH
    events: list[SignedEvent] = field(default_factory=list)

    def move(self, kind: Kind, ts_ms: int, lot: str, qty: int) -> SignedEvent:
        self.seq += 1
        event = Event(
            kind=kind,
            warehouse=WH,
            gateway=GW,
            device="portal-1",
            seq=self.seq,
            prev=self.prev,
            ts_ms=ts_ms,
            bay="A1",
            sku="steel-coil",
            lot=lot,
            qty=qty,
        )
        signed = sign_event(event, self.key)
        self.prev = signed.event_id
        self.events.append(signed)
        return signed


@dataclass
class Store:
    db: Database
    folder: Path
    anchor_key: SigningKey
    portal: Portal
    unload: SignedEvent  # the theft: evidence of the L-BREACH alerts
    trust: LogTrust


def store_events(db: Database, signed: list[SignedEvent], now_ms: int) -> None:
    messages = [Message(events_topic(WH, GW), s.to_wire()) for s in signed]
    with db.transaction() as tx:
        result = Ingestor(load_keys(db.read()), "worker-1").process(tx, messages, now_ms)
    assert dict(result.counts) == {"stored": len(signed)}


def build_store(url: str, folder: Path) -> Store:
    db = Database(url)
    db.open()
    migrate(db)
    anchor_key = keyfile.generate(folder / "anchor.key")
    sequencer = Sequencer(db, ORIGIN, anchor_key, LogSection(10, 1, 300))
    portal = Portal(SigningKey.generate())
    enrol(db, WH, GW, portal.key.public_key, now_ms=at(0, 1))
    save_book(db, BOOK, now_ms=at(0, 2))
    batches = [
        (at(1, 12), [(Kind.LOAD, at(1, 9), "WR-1", 100), (Kind.LOAD, at(1, 10), "WR-2", 50)]),
        (at(2, 12), [(Kind.LOAD, at(2, 9), "WR-3", 80)]),
        (at(3, 12), [(Kind.UNLOAD, at(3, 10), "WR-3", 40)]),
        (at(4, 12), [(Kind.COUNT, at(4, 9), "WR-1", 100)]),
    ]
    for now, moves in batches:
        store_events(db, [portal.move(*m) for m in moves], now)
        sequencer.step(now)
    LiveReconciler(db, StateConfig(), RuleSettings(), None).step(NOW)
    unload = next(e for e in portal.events if e.event.kind is Kind.UNLOAD)
    trust = LogTrust(ORIGIN, anchor_key.public_key)
    return Store(db, folder, anchor_key, portal, unload, trust)


@dataclass
class Api:
    url: str
    store: Store
    officer: str  # token texts
    viewer: str
    revoked: str


@contextmanager
def serve(store: Store) -> Iterator[Api]:
    officer = tokens.add(store.db, "olga.officer", Role.OFFICER, NOW).text
    viewer = tokens.add(store.db, "victor.viewer", Role.VIEWER, NOW).text
    revoked = tokens.add(store.db, "rita.gone", Role.OFFICER, NOW).text
    tokens.revoke(store.db, "rita.gone", NOW)
    service = ApiService(store.db, StateConfig(), store.trust, clock=lambda: NOW)
    server = ApiServer(("127.0.0.1", 0), service)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Api(server.url, store, officer, viewer, revoked)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json

        return json.loads(self.body)


def call(
    url: str, token: str | None = None, method: str = "GET", headers: dict[str, str] | None = None
) -> Answer:
    """One HTTP request; any status comes back as an `Answer` (never raises for 4xx/5xx)."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    data = b"" if method == "POST" else None
    request = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return Answer(exc.code, dict(exc.headers.items()), exc.read())
