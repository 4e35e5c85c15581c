"""The anchor store on both backends: SQLite (embedded default) and a real PostgreSQL 15.

Every test runs twice through the `store_url` fixture (a SQLite file, then a fresh database
on the session PostgreSQL cluster), so the same SQL is proven on both dialects: migrations,
the key registry, verified ingest with its receipts and quarantine, the per-device chain
check (FORK / TAMPER / GAP) and the sequencer with its checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from anchor.chain import gap_scan
from anchor.config import LogSection
from anchor.errors import RegistryError, StoreError
from anchor.ingest import BatchResult, Ingestor, Message
from anchor.log import Sequencer
from anchor.registry import RegisteredKey, enrol, list_keys, load_keys, revoke
from anchor.store.db import Database, Dialect
from anchor.store.schema import SCHEMA_VERSION, migrate
from pledgewatch.events import SignedEvent
from pledgewatch.logentry import key_leaf
from pledgewatch.merkle import CompactRange
from pledgewatch.receipts import ReceiptStatus
from pledgewatch.signing import SigningKey

from store_rig import BASE_MS, Gateway, check_log, open_store

ORIGIN = "bank.example/pledgewatch-test"
WH = "wh-1"


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = open_store(store_url)
    yield database
    database.close()


def ingest(db: Database, messages: list[Message], now_ms: int = BASE_MS) -> BatchResult:
    ingestor = Ingestor(load_keys(db.read()), "worker-1")
    with db.transaction() as tx:
        return ingestor.process(tx, messages, now_ms)


def enrolled(db: Database, gateway: str = "gw-1") -> Gateway:
    gw = Gateway(WH, gateway)
    enrol(db, WH, gateway, gw.key.public_key, now_ms=BASE_MS)
    return gw


def statuses(result: BatchResult, gateway: str = "gw-1") -> list[ReceiptStatus]:
    return [item.status for item in result.receipts[(WH, gateway)]]


def test_url_picks_the_dialect(db: Database, store_url: str) -> None:
    want = Dialect.SQLITE if store_url.startswith("sqlite") else Dialect.POSTGRES
    assert db.dialect is want


def test_migrate_twice_is_idempotent_and_keeps_data(db: Database, store_url: str) -> None:
    gw = enrolled(db)
    migrate(db)
    again = open_store(store_url)  # a second worker migrating the same store
    try:
        read = again.read()
        assert read.all("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
        size, compact = read.one("SELECT size, compact FROM log_state WHERE id = 1")
        assert (size, bytes(compact)) == (0, CompactRange().to_bytes())
        assert [k.key_id for k in list_keys(again)] == [gw.key.key_id]
    finally:
        again.close()


@pytest.mark.parametrize(
    "public",
    [bytes(32), bytes([1]) + bytes(31), b"\xff" * 32, b"\x01" * 31],
    ids=["zero", "identity", "not-on-curve", "short"],
)
def test_registry_refuses_a_key_nothing_could_sign_for(db: Database, public: bytes) -> None:
    with pytest.raises(RegistryError, match="not a valid Ed25519 public key"):
        enrol(db, WH, "gw-1", public, now_ms=BASE_MS)
    assert list_keys(db) == []
    assert db.read().one("SELECT COUNT(*) FROM key_records")[0] == 0  # no leaf was logged


def test_registry_enrol_and_revoke(db: Database) -> None:
    key = SigningKey.generate()
    enrolment = enrol(db, WH, "gw-1", key.public_key, now_ms=BASE_MS, valid_from_ms=5)
    assert list_keys(db) == [RegisteredKey(key.key_id, WH, "gw-1", key.public_key, 5, None)]
    assert isinstance(list_keys(db)[0].public_key, bytes)  # BYTEA comes back as bytes

    with pytest.raises(RegistryError, match="already enrolled"):
        enrol(db, WH, "gw-1", key.public_key, now_ms=BASE_MS)
    other = SigningKey.generate()  # the refused enrolment rolled back; the store still works
    other_enrolment = enrol(db, WH, "gw-2", other.public_key, now_ms=BASE_MS)

    revocation = revoke(db, key.key_id, now_ms=BASE_MS + 9, valid_until_ms=BASE_MS + 7)
    assert revocation.valid_until_ms == BASE_MS + 7
    assert load_keys(db.read())[key.key_id].valid_until_ms == BASE_MS + 7
    with pytest.raises(RegistryError, match="already revoked"):
        revoke(db, key.key_id, now_ms=BASE_MS + 10)
    with pytest.raises(RegistryError, match="no enrolled key"):
        revoke(db, "0" * 32, now_ms=BASE_MS + 10)

    rows = db.read().all("SELECT key_id, leaf, leaf_index FROM key_records ORDER BY id")
    assert [(kid, bytes(leaf), index) for kid, leaf, index in rows] == [
        (key.key_id, key_leaf(enrolment), None),
        (other.key_id, key_leaf(other_enrolment), None),
        (key.key_id, key_leaf(revocation), None),
    ]


def test_ingest_stores_each_event_once_and_answers_duplicates(db: Database) -> None:
    gw = enrolled(db)
    events = gw.chain("scale-1", 5)
    first = ingest(db, [gw.message(e) for e in events] + [gw.message(events[0])])
    assert statuses(first) == [ReceiptStatus.STORED] * 5 + [ReceiptStatus.DUPLICATE]
    assert dict(first.counts) == {"stored": 5, "duplicate": 1}
    assert [s.event_id for s in first.stored] == [e.event_id for e in events]

    second = ingest(db, [gw.message(e) for e in reversed(events)], BASE_MS + 1)
    assert statuses(second) == [ReceiptStatus.DUPLICATE] * 5

    rows = db.read().all(
        "SELECT event_id, seq, kind, wire, received_ms, worker, leaf_index FROM events ORDER BY seq"
    )
    assert rows == [
        (e.event_id, e.event.seq, e.event.kind.value, e.to_wire(), BASE_MS, "worker-1", None)
        for e in events
    ]
    head = db.read().one(
        "SELECT complete_seq, complete_id, max_seq, gap_since_ms "
        "FROM chain_heads WHERE gateway = 'gw-1' AND device = 'scale-1'"
    )
    assert head == (5, events[-1].event_id, 5, None)
    assert db.read().all("SELECT kind FROM chain_records") == []


def test_quarantine_reasons(db: Database) -> None:
    gw = enrolled(db, "gw-1")
    gw2 = enrolled(db, "gw-2")
    revoked = SigningKey.generate()
    enrol(db, WH, "gw-1", revoked.public_key, now_ms=BASE_MS)
    revoke(db, revoked.key_id, now_ms=BASE_MS, valid_until_ms=BASE_MS + 3000)
    early = SigningKey.generate()
    enrol(db, WH, "gw-1", early.public_key, now_ms=BASE_MS, valid_from_ms=BASE_MS + 10**9)

    good = gw.event("dev-1")
    forged = SignedEvent(good.event, good.key_id, bytes(64))
    cases: list[tuple[str, Message, str | None]] = [
        ("bad_topic", gw.message(good, f"pledgewatch/v1/{WH}/gw-1/receipts"), None),
        ("bad_topic", Message("not/a/topic", good.to_wire()), None),
        ("malformed", Message(gw.topic, b'{"not":"an event"}'), None),
        ("malformed", Message(gw.topic, b"\x00\xff\xfe garbage \x00"), None),
        ("malformed", Message(gw.topic, b'{"event":"\\u0000"}'), None),
        ("malformed", Message(gw.topic, b" " * 5000), None),
        ("topic_mismatch", gw.message(good, gw2.topic), good.event_id),
        ("unknown_key", gw.message(gw.event("dev-2", key=SigningKey.generate())), "any"),
        ("bad_signature", gw.message(forged), good.event_id),
        ("key_gateway_mismatch", gw.message(gw.event("dev-3", key=gw2.key)), "any"),
        ("key_revoked", gw.message(gw.event("dev-4", seq=5, prev="a" * 64, key=revoked)), "any"),
        ("key_not_yet_valid", gw.message(gw.event("dev-5", key=early)), "any"),
    ]
    result = ingest(db, [message for _, message, _ in cases])

    rows = db.read().all("SELECT reason, topic, raw, event_id, detail FROM quarantine ORDER BY id")
    assert [r[0] for r in rows] == [reason for reason, _, _ in cases]
    for (reason, message, event_id), row in zip(cases, rows, strict=True):
        assert bytes(row[2]) == message.payload, reason
        assert row[1] == message.topic, reason
        if event_id == "any":
            assert row[3] == SignedEvent.from_wire(message.payload).event_id
        else:
            assert row[3] == event_id, reason
        assert row[4], f"{reason}: no detail"
    assert db.read().all("SELECT event_id FROM events") == []
    # Receipts only where the named key verified the signature and belongs to this gateway.
    answered = {(item.status, item.reason) for item in result.receipts[(WH, "gw-1")]}
    assert answered == {
        (ReceiptStatus.QUARANTINED, "key_revoked"),
        (ReceiptStatus.QUARANTINED, "key_not_yet_valid"),
    }
    assert result.receipts.get((WH, "gw-2"), []) == []
    assert sum(result.counts.values()) == len(cases)


def test_nul_in_a_topic_is_quarantined_not_a_failed_batch(db: Database) -> None:
    """regression: PostgreSQL refuses NUL in TEXT columns, so one message whose topic held a
    NUL failed the whole batch's transaction, good events included."""
    gw = enrolled(db)
    good = gw.event("dev-1")
    result = ingest(db, [Message("pledgewatch/v1/wh\x00/gw-1/events", b"\x00"), gw.message(good)])
    assert dict(result.counts) == {"rejected:bad_topic": 1, "stored": 1}
    topic, raw = db.read().one("SELECT topic, raw FROM quarantine")
    assert (topic, bytes(raw)) == ("pledgewatch/v1/wh\\x00/gw-1/events", b"\x00")
    assert db.read().all("SELECT event_id FROM events") == [(good.event_id,)]


def test_fork_two_events_for_one_seq(db: Database) -> None:
    gw = enrolled(db)
    e1, e2, e3 = gw.chain("door-1", 3)
    e2b = gw.event("door-1", seq=2, prev=e1.event_id, grams=5)
    result = ingest(db, [gw.message(e) for e in (e1, e2, e3, e2b)])
    assert statuses(result) == [ReceiptStatus.STORED] * 4  # both versions are evidence
    records = db.read().all(
        "SELECT kind, device, seq_from, seq_to, event_ids, resolved_ms FROM chain_records"
    )
    assert records == [("FORK", "door-1", 2, 2, f"{e2.event_id},{e2b.event_id}", None)]


def test_tamper_wrong_prev_either_order(db: Database) -> None:
    gw = enrolled(db)
    e1, e2, e3 = gw.chain("door-1", 3)
    bad4 = gw.event("door-1", seq=4, prev="b" * 64)
    ingest(db, [gw.message(e) for e in (e1, e2, e3, bad4)])
    # The other order: the successor with a wrong prev arrives first, then its predecessor.
    d1 = gw.event("door-2")
    d2 = gw.event("door-2", seq=2, prev="c" * 64)
    ingest(db, [gw.message(d2), gw.message(d1)])
    records = db.read().all(
        "SELECT kind, device, seq_from, seq_to, event_ids FROM chain_records ORDER BY id"
    )
    assert records == [
        ("TAMPER", "door-1", 3, 4, f"{e3.event_id},{bad4.event_id}"),
        ("TAMPER", "door-2", 1, 2, f"{d1.event_id},{d2.event_id}"),
    ]
    heads = db.read().all("SELECT device, complete_seq, max_seq FROM chain_heads ORDER BY device")
    assert heads == [("door-1", 3, 4), ("door-2", 1, 2)]


def test_gap_recorded_after_timeout_and_resolved_when_filled(db: Database) -> None:
    gw = enrolled(db)
    events = gw.chain("scale-9", 5)
    ingest(db, [gw.message(events[i]) for i in (0, 1, 3, 4)], BASE_MS)
    with db.transaction() as tx:
        assert gap_scan(tx, BASE_MS + 1, 0) == 1
        assert gap_scan(tx, BASE_MS + 2, 0) == 0  # one record per open gap
    gap = "SELECT kind, seq_from, seq_to, resolved_ms FROM chain_records"
    assert db.read().all(gap) == [("GAP", 3, 3, None)]

    ingest(db, [gw.message(events[2])], BASE_MS + 5)
    assert db.read().all(gap) == [("GAP", 3, 3, BASE_MS + 5)]
    head = db.read().one("SELECT complete_seq, max_seq, gap_since_ms FROM chain_heads")
    assert head == (5, 5, None)
    with db.transaction() as tx:
        assert gap_scan(tx, BASE_MS + 10, 0) == 0


def test_sequencer_appends_gapless_and_cuts_checkpoints(db: Database) -> None:
    gw = enrolled(db)  # one key record: leaf 0
    anchor_key = SigningKey.generate()
    config = LogSection(checkpoint_interval_ms=10**9, checkpoint_max_entries=4, gap_timeout_s=60)
    sequencer = Sequencer(db, ORIGIN, anchor_key, config)
    events = gw.chain("scale-1", 10)
    ingest(db, [gw.message(e) for e in events[:6]], BASE_MS)
    ingest(db, [gw.message(e) for e in events[6:]], BASE_MS + 1)

    assert sequencer.step(BASE_MS + 2) == 11
    assert sequencer.step(BASE_MS + 3) == 0
    indexes = db.read().all("SELECT event_id, leaf_index FROM events ORDER BY leaf_index")
    assert [i for _, i in indexes] == list(range(1, 11))
    assert db.read().all("SELECT leaf_index FROM key_records") == [(0,)]
    assert db.read().all("SELECT size FROM checkpoints") == [(11,)]

    more = gw.chain("scale-1", 2)
    ingest(db, [gw.message(e) for e in more], BASE_MS + 4)
    assert sequencer.step(BASE_MS + 5) == 2  # 13 - 11 < 4 and the interval has not passed
    assert db.read().all("SELECT size FROM checkpoints") == [(11,)]
    cut = sequencer.checkpoint_if_due(BASE_MS + 2 + 10**9)
    assert cut is not None and cut.size == 13
    assert sequencer.checkpoint_if_due(BASE_MS + 2 * 10**9) is None  # the log did not grow

    audit = check_log(db, ORIGIN, anchor_key.public_key)
    assert (audit.size, audit.event_leaves, audit.key_leaves, audit.checkpoints) == (13, 12, 1, 2)
    assert audit.root == cut.root


def test_failed_statement_rolls_back_and_the_store_stays_usable(db: Database) -> None:
    with pytest.raises(Exception, match=r"(?i)unique|duplicate"), db.transaction() as tx:
        tx.execute("INSERT INTO schema_version (version) VALUES (?)", (99,))
        tx.execute("INSERT INTO log_state (id, size, compact) VALUES (1, 0, ?)", (b"",))
    with db.transaction() as tx:
        assert tx.all("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


def test_commit_never_reports_success_for_a_failed_transaction(db: Database) -> None:
    """regression: on PostgreSQL a COMMIT after a swallowed error silently rolled back."""
    try:
        with db.transaction() as tx:
            tx.execute("INSERT INTO schema_version (version) VALUES (?)", (98,))
            with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
                tx.execute("INSERT INTO log_state (id, size, compact) VALUES (1, 0, ?)", (b"",))
    except StoreError as exc:
        assert db.dialect is Dialect.POSTGRES  # the aborted transaction is reported ...
        assert "rolled back" in str(exc)
        rows = [(SCHEMA_VERSION,)]  # ... and nothing of it was kept
    else:
        assert db.dialect is Dialect.SQLITE  # SQLite only undid the failed statement
        rows = [(SCHEMA_VERSION,), (98,)]
    assert db.read().all("SELECT version FROM schema_version ORDER BY version") == rows


def test_percent_and_question_marks_in_sql_literals(db: Database) -> None:
    """regression: `?` → `%s` rewriting broke literals holding `%` or `?` on PostgreSQL."""
    with db.transaction() as tx:
        row = tx.one("SELECT '100%' || ?, 'why?', ? || '%%'", ("x", "y"))
    assert row == ("100%x", "why?", "y%%")
    assert db.read().one("SELECT 'a%b'") == ("a%b",)


def test_each_execute_gets_its_own_cursor(db: Database) -> None:
    """regression: on PostgreSQL every `Tx.execute` reused one cursor, so a second query
    clobbered a result the caller was still iterating."""
    gw = enrolled(db)
    ingest(db, [gw.message(e) for e in gw.chain("scale-1", 3)])
    read = db.read()
    seen = []
    for (seq,) in read.execute("SELECT seq FROM events ORDER BY seq"):
        seen.append((seq, read.one("SELECT count(*) FROM events WHERE seq <= ?", (seq,))[0]))
    assert seen == [(1, 1), (2, 2), (3, 3)]
