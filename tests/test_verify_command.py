"""``pledgewatch verify``: exit codes, check lines and the summary, run as a real subprocess.

The embedded ledger is a real ``anchor.ledger.sqlite`` file; the Ethereum path runs against a
real anvil dev node when its binary is installed (skipped locally otherwise, an error in CI).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anchor.ledger.sqlite import SqliteLedger, SqliteLedgerConfig
from pledgewatch.anchoring import LedgerReceipt, anchor_payload
from pledgewatch.prooffile import Check

from servers import AnvilServer, free_port
from test_prooffile import ORIGIN, WITNESS, World, edit, good_indexes, make_world

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


def verify(*args: str | Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pledgewatch.cli", "verify", *map(str, args)],
        cwd=ROOT,
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def keys(w: World, *, witness: bool = True) -> list[str]:
    out = ["--anchor-key", w.anchor_key.hex()]
    if witness:
        out += ["--witness-key", f"{WITNESS}:{w.witness.public_key.hex()}"]
    return out


def write(tmp_path: Path, data: bytes, name: str = "proof.json") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_good_file_exits_0_and_says_what_was_proven(world: World, tmp_path: Path) -> None:
    index = good_indexes(world)[0]
    result = verify(write(tmp_path, world.proof(index)), *keys(world), "--require-ledger")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for check, line in zip(Check, lines, strict=False):
        assert line.split()[0] == check.value and line.split()[1].rstrip(":") == "ok"
    signed = world.events[index]
    receipt = world.ledger()
    assert lines[-1] == (
        f"event {signed.event_id} (LOAD of 4 × steel-coil lot WR-1 in bay A1 at "
        "2026-01-01T00:00:01.000Z by device portal-in of gw-1/wh-1) is entry "
        f"{index} of log {ORIGIN} at size {world.size}, witnessed by {WITNESS} at "
        "2026-01-01T01:00:00.000Z, anchored on sqlite ledger "
        f"{receipt.ledger_id} entry 3 ({receipt.tx_hash}) (receipt checked offline only)"
    )
    assert result.stderr == ""


def test_tampered_file_exits_1_naming_the_check(world: World, tmp_path: Path) -> None:
    good = world.proof(good_indexes(world)[0])
    bad = edit(good, lambda d: d["event"]["event"].__setitem__("qty", 40))
    result = verify(write(tmp_path, bad), *keys(world))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["format", "ok"]
    assert lines[1].startswith("event-signature       FAILED: ")
    assert all(line.endswith("not run") for line in lines[2:8])
    assert lines[-1].startswith("NOT VERIFIED: event-signature: ")


def test_each_failing_check_is_named(world: World, tmp_path: Path) -> None:
    good = world.proof(good_indexes(world)[0])
    cases = {
        Check.EVENT_INCLUDED: edit(good, lambda d: d.__setitem__("leaf_index", 3)),
        Check.CHECKPOINT_SIGNATURE: edit(
            good, lambda d: d.__setitem__("checkpoint", world.note(signer=world.stranger).decode())
        ),
        Check.LEDGER: edit(good, lambda d: d["ledger"].__setitem__("block_time_ms", 5)),
    }
    for check, data in cases.items():
        result = verify(write(tmp_path, data), *keys(world))
        assert result.returncode == 1, check
        failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
        assert len(failed) == 1 and failed[0].startswith(check.value), result.stdout


def test_witness_required_only_when_given(world: World, tmp_path: Path) -> None:
    data = world.proof(good_indexes(world)[0], note=world.note(witnesses=()))
    path = write(tmp_path, data)
    assert verify(path, *keys(world, witness=False)).returncode == 0
    result = verify(path, *keys(world))
    assert result.returncode == 1
    assert "witness-cosignature   FAILED" in result.stdout


def test_no_ledger_receipt(world: World, tmp_path: Path) -> None:
    path = write(tmp_path, world.proof(good_indexes(world)[0], ledger=None))
    result = verify(path, *keys(world))
    assert result.returncode == 0
    assert result.stdout.splitlines()[-1].endswith(", not anchored on a ledger")
    result = verify(path, *keys(world), "--require-ledger")
    assert result.returncode == 1
    assert "ledger                FAILED: no ledger receipt" in result.stdout


def test_json_output(world: World, tmp_path: Path) -> None:
    index = good_indexes(world)[1]
    result = verify(write(tmp_path, world.proof(index)), *keys(world), "--json")
    assert result.returncode == 0
    obj = json.loads(result.stdout)
    assert obj["ok"] is True
    assert [c["check"] for c in obj["checks"]] == [c.value for c in Check]
    assert {c["status"] for c in obj["checks"]} == {"ok"}
    assert obj["proven"]["event_id"] == world.events[index].event_id
    assert obj["proven"]["leaf_index"] == index
    assert obj["proven"]["witnesses"] == [{"name": WITNESS, "timestamp": world.witness_ts}]
    bad = edit(world.proof(index), lambda d: d.__setitem__("leaf_index", index + 1))
    result = verify(write(tmp_path, bad), *keys(world), "--json")
    assert result.returncode == 1
    obj = json.loads(result.stdout)
    assert obj["ok"] is False and obj["proven"] is None
    assert [c["status"] for c in obj["checks"]][3:6] == ["ok", "FAILED", "not run"]


def test_stdin(world: World) -> None:
    result = verify("-", *keys(world), stdin=world.proof(good_indexes(world)[0]))
    assert result.returncode == 0, result.stdout


def test_garbage_file_is_a_format_failure(world: World, tmp_path: Path) -> None:
    result = verify(write(tmp_path, b"\x00not json"), *keys(world))
    assert result.returncode == 1
    assert result.stdout.startswith("format                FAILED: ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{missing}", "--anchor-key", "00" * 32], "cannot read"),
        (["{file}", "--anchor-key", "00" * 31], "--anchor-key"),
        (["{file}"], "--anchor-key"),
        (["{file}", "--anchor-key", "00" * 32, "--witness-key", "00" * 32], "--witness-key"),
        (["{file}", "--anchor-key", "00" * 32, "--witness-key", "a b:" + "00" * 32], "NAME:HEX"),
        (["{file}", "--anchor-key", "00" * 32, "--ledger", "http://127.0.0.1:1"], "--ledger"),
        (["{file}", "--anchor-key", "00" * 32, "--ledger", "sqlite://host/x"], "--ledger"),
        (["{file}", "--anchor-key", "00" * 32, "--ledger", "sqlite:///x?mode=rw"], "--ledger"),
    ],
)
def test_bad_arguments_exit_2(world: World, tmp_path: Path, args: list[str], message: str) -> None:
    path = write(tmp_path, world.proof(good_indexes(world)[0]))
    argv = [a.format(missing=tmp_path / "nope.json", file=path) for a in args]
    result = verify(*argv)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


# ---------------------------------------------------------------------------------------------
# --ledger sqlite:///PATH: the real embedded ledger, read-only


@pytest.fixture
def sqlite_ledger(tmp_path: Path, world: World) -> Iterator[tuple[Path, LedgerReceipt]]:
    path = tmp_path / "ledger.db"
    ledger = SqliteLedger(SqliteLedgerConfig(path))
    ledger.open()
    try:
        ledger.anchor(b"pledgewatch/ledger-anchor/v1\nsomething earlier")
        receipt = ledger.anchor(anchor_payload(ORIGIN, world.size, world.tree.root()))
        ledger.anchor(b"pledgewatch/ledger-anchor/v1\nsomething later")
    finally:
        ledger.close()
    yield path, receipt


def test_sqlite_ledger_confirms_online(
    world: World, tmp_path: Path, sqlite_ledger: tuple[Path, LedgerReceipt]
) -> None:
    db, receipt = sqlite_ledger
    proof = write(tmp_path, world.proof(good_indexes(world)[0], ledger=receipt))
    before = sorted(p.name for p in tmp_path.iterdir())
    mtime = db.stat().st_mtime_ns
    result = verify(proof, *keys(world), "--ledger", f"sqlite://{db}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(confirmed online)" in result.stdout.splitlines()[-1]
    assert db.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_sqlite_ledger_in_use_by_its_writer_confirms_online(
    world: World, tmp_path: Path, sqlite_ledger: tuple[Path, LedgerReceipt]
) -> None:
    db, _ = sqlite_ledger
    with SqliteLedger(SqliteLedgerConfig(db)) as writer:
        receipt = writer.anchor(anchor_payload(ORIGIN, world.size, world.tree.root()))
        assert (tmp_path / "ledger.db-wal").exists()
        proof = write(tmp_path, world.proof(good_indexes(world)[0], ledger=receipt))
        result = verify(proof, *keys(world), "--ledger", f"sqlite://{db}")
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"sqlite ledger {receipt.ledger_id} entry 4 " in result.stdout


def test_sqlite_ledger_rewritten_below_the_receipt_fails(
    world: World, tmp_path: Path, sqlite_ledger: tuple[Path, LedgerReceipt]
) -> None:
    db, receipt = sqlite_ledger
    proof = write(tmp_path, world.proof(good_indexes(world)[0], ledger=receipt))
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER ledger_entries_no_update")
        conn.execute("UPDATE ledger_entries SET payload = x'00' WHERE height = 1")
    result = verify(proof, *keys(world), "--ledger", f"sqlite://{db}")
    assert result.returncode == 1
    assert "ledger                FAILED: the ledger does not hold this entry" in result.stdout
    assert "entry 1 does not chain" in result.stdout


def test_sqlite_ledger_without_the_entry_fails(
    world: World, tmp_path: Path, sqlite_ledger: tuple[Path, LedgerReceipt]
) -> None:
    db, _ = sqlite_ledger
    other = SqliteLedger(SqliteLedgerConfig(tmp_path / "other.db"))
    with other:
        receipt = other.anchor(anchor_payload(ORIGIN, world.size, world.tree.root()))
    proof = write(tmp_path, world.proof(good_indexes(world)[0], ledger=receipt))
    result = verify(proof, *keys(world), "--ledger", f"sqlite://{db}")
    assert result.returncode == 1
    assert "ledger id (genesis entry hash) differs" in result.stdout


def test_sqlite_ledger_unusable_exits_2(world: World, tmp_path: Path) -> None:
    proof = write(tmp_path, world.proof(good_indexes(world)[0]))
    result = verify(proof, *keys(world), "--ledger", f"sqlite://{tmp_path}/absent.db")
    assert result.returncode == 2
    assert "no such file" in result.stderr
    sqlite3.connect(tmp_path / "plain.db").execute("CREATE TABLE t (x)").connection.close()
    result = verify(proof, *keys(world), "--ledger", f"sqlite://{tmp_path}/plain.db")
    assert result.returncode == 2
    assert "not a pledgewatch ledger" in result.stderr
    result = verify(proof, *keys(world), "--ledger", "ethereum+http://127.0.0.1:1")
    assert result.returncode == 2
    assert "anchored on sqlite, --ledger names ethereum" in result.stderr


# ---------------------------------------------------------------------------------------------
# --ledger ethereum+http://…: a real anvil dev node


def _send_anchor(anvil: AnvilServer, payload: bytes) -> LedgerReceipt:
    sender = anvil.rpc("eth_accounts")[0]
    tx = {"from": sender, "to": sender, "value": "0x0", "data": "0x" + payload.hex()}
    tx_hash = anvil.rpc("eth_sendTransaction", [tx])
    deadline = time.monotonic() + 10
    while (mined := anvil.rpc("eth_getTransactionReceipt", [tx_hash])) is None:
        assert time.monotonic() < deadline, "anvil did not mine the transaction"
        time.sleep(0.02)
    block = anvil.rpc("eth_getBlockByNumber", [mined["blockNumber"], False])
    chain_id = int(anvil.rpc("eth_chainId"), 16)
    return LedgerReceipt(
        "ethereum",
        f"eip155:{chain_id}",
        chain_id,
        tx_hash,
        int(mined["blockNumber"], 16),
        int(block["timestamp"], 16) * 1000,
        None,
        payload,
    )


def test_ethereum_ledger_confirms_online(world: World, tmp_path: Path, anvil: AnvilServer) -> None:
    receipt = _send_anchor(anvil, anchor_payload(ORIGIN, world.size, world.tree.root()))
    proof = write(tmp_path, world.proof(good_indexes(world)[0], ledger=receipt))
    result = verify(proof, *keys(world), "--ledger", anvil.ledger_url())
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"ethereum {receipt.ledger_id} block {receipt.block_number} tx {receipt.tx_hash}" in (
        result.stdout
    )
    assert "(confirmed online)" in result.stdout
    # A receipt naming another transaction: the node's copy has another payload.
    other = _send_anchor(anvil, b"pledgewatch/ledger-anchor/v1\nsomething else")
    forged = LedgerReceipt(
        "ethereum",
        "eip155:31337",
        31337,
        other.tx_hash,
        other.block_number,
        other.block_time_ms,
        None,
        receipt.payload,
    )
    proof = write(tmp_path, world.proof(good_indexes(world)[0], ledger=forged))
    result = verify(proof, *keys(world), "--ledger", anvil.ledger_url())
    assert result.returncode == 1
    assert "ledger                FAILED: the ledger does not hold this entry" in result.stdout


def test_ethereum_ledger_unreachable_exits_2(world: World, tmp_path: Path) -> None:
    receipt = LedgerReceipt(
        "ethereum",
        "eip155:31337",
        31337,
        "0x" + "ab" * 32,
        5,
        1_000,
        None,
        anchor_payload(ORIGIN, world.size, world.tree.root()),
    )
    proof = write(tmp_path, world.proof(good_indexes(world)[0], ledger=receipt))
    offline = verify(proof, *keys(world))
    assert offline.returncode == 0, offline.stdout
    assert "(receipt checked offline only)" in offline.stdout
    result = verify(proof, *keys(world), "--ledger", f"ethereum+http://127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert "unreachable" in result.stderr
    assert "ledger                NOT CHECKED" in result.stdout
