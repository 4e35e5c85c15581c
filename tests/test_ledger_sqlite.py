"""The embedded hash-chained SQLite ledger: anchor, check, and tampering with the file."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anchor.ledger import LEDGERS, LedgerConfigError, LedgerError, ledger_kind, open_ledger
from anchor.ledger.sqlite import (
    GENESIS_PAYLOAD,
    ZERO_HASH,
    SqliteLedger,
    SqliteLedgerConfig,
    parse_sqlite_url,
)
from pledgewatch.anchoring import LedgerReceipt, anchor_payload, sqlite_entry_hash
from pledgewatch.errors import ProofError

ROOT = Path(__file__).resolve().parents[1]


def payload(n: int) -> bytes:
    return anchor_payload("bank.example/log", n, bytes([n % 256]) * 32)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(db_path: Path) -> Iterator[SqliteLedger]:
    opened = open_ledger(f"sqlite://{db_path}")
    assert isinstance(opened, SqliteLedger)
    yield opened
    opened.close()


def anchor_some(ledger: SqliteLedger, count: int = 4) -> list[LedgerReceipt]:
    return [ledger.anchor(payload(n)) for n in range(1, count + 1)]


def raw(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(db_path, isolation_level=None)


def test_anchor_then_check_each_receipt(ledger: SqliteLedger) -> None:
    receipts = anchor_some(ledger)
    genesis = (
        sqlite3.connect(ledger.path)
        .execute(
            "SELECT prev_hash, time_ms, payload, entry_hash FROM ledger_entries WHERE height = 0"
        )
        .fetchone()
    )
    assert genesis[0] == ZERO_HASH and genesis[2] == GENESIS_PAYLOAD
    assert sqlite_entry_hash(ZERO_HASH, 0, genesis[1], GENESIS_PAYLOAD) == genesis[3]
    assert ledger.ledger_id == genesis[3].hex()
    prev = genesis[3].hex()
    for height, receipt in enumerate(receipts, start=1):
        assert receipt.backend == "sqlite" and receipt.chain_id is None
        assert receipt.ledger_id == ledger.ledger_id
        assert receipt.block_number == height
        assert receipt.prev_hash == prev
        assert receipt.payload == payload(height)
        computed = sqlite_entry_hash(
            bytes.fromhex(prev), height, receipt.block_time_ms, receipt.payload
        )
        assert receipt.tx_hash == computed.hex()
        prev = receipt.tx_hash
        ledger.check(receipt)
        ledger.check(LedgerReceipt.from_dict(json.loads(json.dumps(receipt.to_dict()))))


def test_reopen_keeps_id_and_chain(db_path: Path) -> None:
    with SqliteLedger.from_url(f"sqlite://{db_path}") as first:
        receipts = anchor_some(first, 2)
        ledger_id = first.ledger_id
    with SqliteLedger.from_url(f"sqlite://{db_path}") as again:
        assert again.ledger_id == ledger_id
        for receipt in receipts:
            again.check(receipt)
        third = again.anchor(payload(3))
    assert third.block_number == 3 and third.prev_hash == receipts[-1].tx_hash


def test_two_ledger_files_have_different_ids(tmp_path: Path) -> None:
    ids = []
    for n, now in enumerate((1_000, 2_000)):
        ledger = SqliteLedger(SqliteLedgerConfig(tmp_path / f"{n}.db"), clock=iter([now]).__next__)
        ledger.open()
        ids.append(ledger.ledger_id)
        ledger.close()
    assert ids[0] != ids[1]


def test_entry_times_never_go_backwards(db_path: Path) -> None:
    times = iter([5_000, 9_000, 7_000, 8_000, 12_000])
    ledger = SqliteLedger(SqliteLedgerConfig(db_path), clock=lambda: next(times))
    ledger.open()
    stamps = [ledger.anchor(payload(n)).block_time_ms for n in range(1, 5)]
    assert stamps == [9_000, 9_000, 9_000, 12_000]
    ledger.close()


def test_triggers_refuse_update_and_delete(ledger: SqliteLedger) -> None:
    anchor_some(ledger, 2)
    db = raw(ledger.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only: UPDATE refused"):
        db.execute("UPDATE ledger_entries SET payload = x'00' WHERE height = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only: DELETE refused"):
        db.execute("DELETE FROM ledger_entries WHERE height = 2")
    db.close()


def test_tampered_payload_fails_check_at_and_above_it(ledger: SqliteLedger) -> None:
    receipts = anchor_some(ledger)
    db = raw(ledger.path)
    db.execute("DROP TRIGGER ledger_entries_no_update")
    db.execute("UPDATE ledger_entries SET payload = ? WHERE height = 2", (payload(99),))
    db.close()
    ledger.check(receipts[0])
    for receipt in receipts[1:]:
        with pytest.raises(ProofError, match="entry 2 does not hash") as caught:
            ledger.check(receipt)
        assert caught.value.expected == bytes.fromhex(receipts[1].tx_hash)


def test_rewritten_chain_fails_check(ledger: SqliteLedger) -> None:
    """Changing entry 2 and recomputing every hash above it keeps the chain consistent, but
    no longer matches the receipts handed out before."""
    receipts = anchor_some(ledger)
    db = raw(ledger.path)
    db.execute("DROP TRIGGER ledger_entries_no_update")
    rows = db.execute(
        "SELECT height, prev_hash, time_ms, payload FROM ledger_entries ORDER BY height"
    ).fetchall()
    prev = ZERO_HASH
    for height, stored_prev, time_ms, stored_body in rows:
        body = payload(99) if height == 2 else stored_body
        prev = prev if height else stored_prev
        entry_hash = sqlite_entry_hash(prev, height, time_ms, body)
        db.execute(
            "UPDATE ledger_entries SET prev_hash = ?, payload = ?, entry_hash = ? WHERE height = ?",
            (prev, body, entry_hash, height),
        )
        prev = entry_hash
    db.close()
    ledger.check(receipts[0])
    with pytest.raises(ProofError, match="payload differs"):
        ledger.check(receipts[1])
    with pytest.raises(ProofError, match="entry hash"):
        ledger.check(receipts[2])


def test_tampering_after_a_check_is_still_caught(ledger: SqliteLedger) -> None:
    """check() walks the chain once per open ledger; later checks re-verify their own entry,
    its link, and the highest verified entry."""
    receipts = anchor_some(ledger, 5)
    ledger.check(receipts[-1])  # walked genesis..5
    db = raw(ledger.path)
    db.execute("DROP TRIGGER ledger_entries_no_update")
    db.execute("UPDATE ledger_entries SET payload = ? WHERE height = 2", (payload(99),))
    with pytest.raises(ProofError, match="entry 2 does not hash"):
        ledger.check(receipts[1])
    with pytest.raises(ProofError, match="entry 2 does not hash"):
        ledger.check(receipts[2])  # its link to entry 2
    db.execute("UPDATE ledger_entries SET payload = ? WHERE height = 2", (payload(2),))
    ledger.check(receipts[2])
    db.execute("UPDATE ledger_entries SET time_ms = time_ms + 1 WHERE height = 5")
    with pytest.raises(ProofError, match="entry 5 changed since it was verified"):
        ledger.check(receipts[0])
    db.close()


def test_a_fresh_open_walks_from_genesis_again(db_path: Path) -> None:
    with SqliteLedger.from_url(f"sqlite://{db_path}") as ledger:
        receipts = anchor_some(ledger, 4)
        ledger.check(receipts[-1])
    db = raw(db_path)
    db.execute("DROP TRIGGER ledger_entries_no_update")
    db.execute("UPDATE ledger_entries SET payload = x'00' WHERE height = 1")
    db.close()
    ledger = open_ledger(f"sqlite://{db_path}")
    with pytest.raises(ProofError, match="entry 1 does not hash"):
        ledger.check(receipts[-1])
    ledger.close()


def test_checking_every_receipt_costs_linear_hashing(
    ledger: SqliteLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anchor.ledger.sqlite as module

    receipts = [ledger.anchor(b"p%d" % n) for n in range(300)]
    calls = 0
    real = module.sqlite_entry_hash

    def counting(prev: bytes, height: int, time_ms: int, body: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(prev, height, time_ms, body)

    monkeypatch.setattr(module, "sqlite_entry_hash", counting)
    for receipt in receipts:
        ledger.check(receipt)
    for receipt in reversed(receipts):
        ledger.check(receipt)
    assert calls < 12 * len(receipts)  # a walk from genesis per check would be ~45,000


def test_edited_file_bytes_fail_check(db_path: Path) -> None:
    with SqliteLedger.from_url(f"sqlite://{db_path}") as ledger:
        receipts = anchor_some(ledger)
    # The last connection's close checkpoints the WAL into the main file.
    assert not Path(f"{db_path}-wal").exists()
    data = bytearray(db_path.read_bytes())
    needle = payload(3)
    at = data.find(needle)
    assert at > 0 and data.find(needle, at + 1) == -1
    root_at = at + needle.index(b'"root":"') + len(b'"root":"')
    data[root_at] ^= 0x01  # '0' <-> '1': still valid hex, still canonical
    db_path.write_bytes(bytes(data))
    with SqliteLedger.from_url(f"sqlite://{db_path}") as ledger:
        ledger.check(receipts[1])
        with pytest.raises(ProofError, match="entry 3 does not hash"):
            ledger.check(receipts[2])


def test_tampered_tip_refuses_to_append(ledger: SqliteLedger) -> None:
    anchor_some(ledger, 2)
    db = raw(ledger.path)
    db.execute("DROP TRIGGER ledger_entries_no_update")
    db.execute("UPDATE ledger_entries SET time_ms = time_ms + 1 WHERE height = 2")
    db.close()
    with pytest.raises(LedgerError, match="tip entry 2 does not match its hash"):
        ledger.anchor(payload(3))


def test_tampered_genesis_refuses_to_open(db_path: Path) -> None:
    with SqliteLedger.from_url(f"sqlite://{db_path}") as ledger:
        ledger.anchor(payload(1))
    db = raw(db_path)
    db.execute("DROP TRIGGER ledger_entries_no_update")
    db.execute("UPDATE ledger_entries SET time_ms = time_ms + 1 WHERE height = 0")
    db.close()
    with pytest.raises(LedgerError, match="genesis entry does not hash"):
        open_ledger(f"sqlite://{db_path}")


def test_deleted_entry_fails_check(ledger: SqliteLedger) -> None:
    receipts = anchor_some(ledger)
    db = raw(ledger.path)
    db.execute("DROP TRIGGER ledger_entries_no_delete")
    db.execute("DELETE FROM ledger_entries WHERE height = 2")
    db.close()
    with pytest.raises(ProofError, match="missing height 2"):
        ledger.check(receipts[2])
    db = raw(ledger.path)
    db.execute("DELETE FROM ledger_entries WHERE height >= 2")
    db.close()
    with pytest.raises(ProofError, match="no entry at height 4"):
        ledger.check(receipts[3])


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("payload", payload(7), "payload differs"),
        ("block_number", 2, "payload differs"),
        ("block_number", 9, "no entry at height 9"),
        ("block_number", 0, "genesis anchors nothing"),
        ("block_time_ms", "+1", "time_ms"),
        ("block_time_ms", "-1", "time_ms"),
        ("tx_hash", "00" * 32, "entry hash"),
        ("prev_hash", "00" * 32, "prev_hash"),
        ("prev_hash", None, "prev_hash"),
        ("ledger_id", "ab" * 32, "ledger id"),
        ("backend", "ethereum", "not for the sqlite ledger"),
        ("chain_id", 1, "chain_id"),
    ],
)
def test_wrong_receipt_fails_check(
    ledger: SqliteLedger, field: str, value: object, message: str
) -> None:
    receipt = anchor_some(ledger, 3)[0]
    if value in ("+1", "-1"):
        value = receipt.block_time_ms + int(str(value))
    changes: dict[str, Any] = {field: value}
    with pytest.raises(ProofError, match=message):
        ledger.check(dataclasses.replace(receipt, **changes))


def test_payload_limits(ledger: SqliteLedger) -> None:
    with pytest.raises(LedgerError, match="payload"):
        ledger.anchor(b"")
    with pytest.raises(LedgerError, match="payload"):
        ledger.anchor(b"x" * 4097)
    assert ledger.anchor(b"x" * 4096).block_number == 1


def test_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_sqlite_url("sqlite:///abs/l.db") == SqliteLedgerConfig(Path("/abs/l.db"))
    assert parse_sqlite_url("sqlite:rel/l.db?timeout_s=2.5") == SqliteLedgerConfig(
        Path("rel/l.db"), 2.5
    )
    assert parse_sqlite_url("sqlite:///a%20b/l.db").path == Path("/a b/l.db")
    assert ledger_kind("ethereum+https://node.example") == "ethereum"
    assert set(LEDGERS) == {"sqlite", "ethereum"}
    with pytest.raises(LedgerConfigError) as caught:
        parse_sqlite_url("sqlite://host/l.db?timeout_s=-1&mode=ro#x")
    for problem in ("host", "timeout_s", "'mode': unknown", "fragment"):
        assert problem in str(caught.value)
    with pytest.raises(LedgerConfigError, match="path"):
        parse_sqlite_url("sqlite:")
    with pytest.raises(LedgerConfigError, match="scheme"):
        open_ledger("postgres://x/y")
    monkeypatch.chdir(tmp_path)
    relative = open_ledger("sqlite:sub.db")
    relative.anchor(payload(1))
    relative.close()
    assert (tmp_path / "sub.db").is_file()


def test_refuses_foreign_or_broken_files(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.close()
    with pytest.raises(LedgerError, match="not a pledgewatch ledger"):
        open_ledger(f"sqlite://{other}")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(4096))
    with pytest.raises(LedgerError, match=r"garbage\.db"):
        open_ledger(f"sqlite://{garbage}")
    with pytest.raises(LedgerError, match="does not exist"):
        open_ledger(f"sqlite://{tmp_path}/missing/ledger.db")
    closed = SqliteLedger.from_url(f"sqlite://{tmp_path}/never.db")
    with pytest.raises(LedgerError, match="not open"):
        closed.anchor(payload(1))
    assert not (tmp_path / "never.db").exists()  # constructing did no I/O


_APPENDER = """
import json, sys
from anchor.ledger import open_ledger
from pledgewatch.anchoring import anchor_payload
ledger = open_ledger(sys.argv[1])
for n in range(int(sys.argv[3])):
    receipt = ledger.anchor(anchor_payload(sys.argv[2], n, bytes(32)))
    print(json.dumps(receipt.to_dict()), flush=True)
ledger.close()
"""


def test_two_processes_append_to_one_file(db_path: Path) -> None:
    url = f"sqlite://{db_path}"
    open_ledger(url).close()  # create it first, so neither child races on the schema
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _APPENDER, url, f"writer-{n}", "25"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    receipts = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        receipts += [LedgerReceipt.from_dict(json.loads(line)) for line in out.splitlines()]
    assert sorted(r.block_number for r in receipts) == list(range(1, 51))
    with SqliteLedger.from_url(url) as ledger:
        for receipt in receipts:
            ledger.check(receipt)


def test_stdlib_verifier_agrees(ledger: SqliteLedger) -> None:
    """`pledgewatch verify --ledger sqlite:…` (core, no anchor import) reads the same file."""
    from pledgewatch.verify_command import check_sqlite_receipt

    receipts = anchor_some(ledger, 3)
    for receipt in receipts:
        check_sqlite_receipt(str(ledger.path), receipt)
    with pytest.raises(ProofError):
        check_sqlite_receipt(str(ledger.path), dataclasses.replace(receipts[1], payload=b"x"))
