"""The anchor end to end on real Mosquitto: gateways → broker → anchor (+ witness, ledger).

Checked from the anchor's raw tables and from proof files verified by `pledgewatch verify`.
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from anchor.export import export_root, read_events, read_keys
from pledgewatch import canonical
from pledgewatch.checkpoint import verify_checkpoint

from anchor_rig import ORIGIN, WITNESS_NAME, AnchorRig, cli, wait_until
from gateway_rig import WAREHOUSE, GatewayRig, weight_lines
from servers import MosquittoServer

pytestmark = pytest.mark.slow
DEVICES = ["lc-a1", "lc-a2"]


def gateway_for(
    anchor: AnchorRig, tmp_path: Path, broker: MosquittoServer, name: str
) -> GatewayRig:
    rig = GatewayRig(tmp_path / name, broker.port, anchor_key=anchor.key, gateway=name)
    anchor.enrol(WAREHOUSE, name, rig.key.public_key)
    return rig


def chain_complete(anchor: AnchorRig, gateway: str, device: str, count: int) -> None:
    rows = anchor.query(
        "SELECT seq, event_id, prev FROM events WHERE gateway = ? AND device = ? ORDER BY seq",
        (gateway, device),
    )
    assert [r[0] for r in rows] == list(range(1, count + 1)), (gateway, device, len(rows))
    for before, after in itertools.pairwise(rows):
        assert after[2] == before[1]


def test_gateways_to_witnessed_anchored_log_and_a_verifiable_proof(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    anchor = AnchorRig(tmp_path / "anchor", mosquitto.port)
    gateways = [gateway_for(anchor, tmp_path, mosquitto, name) for name in ("gw-1", "gw-2")]
    try:
        anchor.start()
        for g in gateways:
            g.feed(weight_lines(DEVICES, 300))
            g.start()
        expected = 2 * (2 * 300 + 1)  # + each gateway's start heartbeat
        status = anchor.wait_status(
            lambda s: (
                s["events"] == expected
                and s["unsequenced"] == 0
                and s["witnessed_size"] == s["log_size"]
                and s["anchored_size"] == s["log_size"]
            )
        )
        assert status["log_size"] == expected + 2  # + the two key enrolments
        assert status["quarantined"] == 0
        for g in gateways:
            g.wait_status(lambda s: s["outbox_depth"] == 0)
            for device in DEVICES:
                chain_complete(anchor, g.gateway, device, 300)
        assert anchor.query("SELECT COUNT(*) FROM chain_records") == [(0,)]
        event_id = anchor.query(
            "SELECT event_id FROM events WHERE gateway = 'gw-2' AND device = 'lc-a2' AND seq = 150"
        )[0][0]
        proof = tmp_path / "proof.json"
        cli("proof", str(event_id), "-o", str(proof), "--config", str(anchor.config_path))
        verified = cli(
            "verify",
            str(proof),
            "--anchor-key",
            anchor.key.public_key.hex(),
            "--witness-key",
            f"{WITNESS_NAME}:{anchor.witness_key.public_key.hex()}",
            "--require-ledger",
            check=False,
        )
        assert verified.returncode == 0, verified.stdout + verified.stderr
        audit = cli("audit", "--config", str(anchor.config_path), check=False)
        assert audit.returncode == 0, audit.stdout + audit.stderr
        assert "audit clean" in audit.stdout
        exported = tmp_path / "export"
        cli("export", "--config", str(anchor.config_path), "-o", str(exported))
        manifest = canonical.decode((exported / "manifest.json").read_bytes().rstrip(b"\n"))
        size, root = export_root(
            read_events(exported / "signed-events.jsonl"), read_keys(exported / "gateways.json")
        )
        checkpoint = verify_checkpoint(
            manifest["checkpoint"].encode(), ORIGIN, anchor.key.public_key, origin=ORIGIN
        )
        assert (size, root) == (checkpoint.size, checkpoint.root)  # the export is the whole log
    finally:
        for g in gateways:
            g.stop()
        anchor.stop()


def test_anchor_kill_9_mid_stream_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    anchor = AnchorRig(tmp_path / "anchor", mosquitto.port, witness=False)
    gateway = gateway_for(anchor, tmp_path, mosquitto, "gw-1")
    try:
        anchor.start()
        gateway.feed(weight_lines(DEVICES, 1500))
        gateway.start()
        wait_until(lambda: anchor.status()["events"] >= 300, 60, "first events stored")
        anchor.kill_anchor()
        time.sleep(1)
        anchor.start()
        wait_until(lambda: anchor.status()["events"] >= 1500, 60, "more events")
        anchor.kill_anchor()
        anchor.start()
        status = anchor.wait_status(lambda s: s["events"] == 3001 and s["unsequenced"] == 0)
        gateway.wait_status(lambda s: s["outbox_depth"] == 0)
        assert status["log_size"] == 3002
        for device in DEVICES:
            chain_complete(anchor, "gw-1", device, 1500)
        indexes = anchor.query("SELECT leaf_index FROM events ORDER BY leaf_index")
        assert [i[0] for i in indexes] == list(range(1, 3002))  # 0 is the key enrolment
        assert anchor.query("SELECT COUNT(*) FROM quarantine") == [(0,)]
    finally:
        gateway.stop()
        anchor.stop()


def test_audit_finds_rows_edited_deleted_or_inserted_in_the_database_file(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    anchor = AnchorRig(tmp_path / "anchor", mosquitto.port, witness=False)
    gateway = gateway_for(anchor, tmp_path, mosquitto, "gw-1")
    try:
        anchor.start()
        gateway.feed(weight_lines(["lc-a1"], 50))
        gateway.start()
        anchor.wait_status(lambda s: s["events"] == 51 and s["anchored_size"] == s["log_size"])
    finally:
        gateway.stop()
        anchor.stop()
    clean = cli("audit", "--config", str(anchor.config_path), check=False)
    assert clean.returncode == 0, clean.stdout
    db = tmp_path / "anchor" / "anchor.db"
    pristine = tmp_path / "pristine.db"
    shutil.copy(db, pristine)
    edits = {
        "edited": (
            "UPDATE events SET wire = replace(wire, '\"grams\":7,', '\"grams\":8,') WHERE seq = 8",
            "event_id_mismatch",
        ),
        "deleted": ("DELETE FROM events WHERE seq = 20", "entry_missing"),
        "inserted": (
            "INSERT INTO events SELECT substr(event_id, 2) || 'f', warehouse, gateway, "
            "device, seq, prev, kind, ts_ms, wire, received_ms, worker, 9999 FROM events "
            "WHERE seq = 3",
            "entry_beyond_log",
        ),
    }
    for name, (sql, finding) in edits.items():
        shutil.copy(pristine, db)
        for suffix in ("-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        conn = sqlite3.connect(db)
        conn.execute(sql)
        conn.commit()
        conn.close()
        result = cli("audit", "--config", str(anchor.config_path), "--json", check=False)
        assert result.returncode == 1, (name, result.stdout, result.stderr)
        assert finding in result.stdout, (name, result.stdout)


def test_two_workers_on_postgresql_store_every_event_once_in_one_gapless_log(
    tmp_path: Path, mosquitto: MosquittoServer, pg_url: str
) -> None:
    anchor = AnchorRig(tmp_path / "anchor", mosquitto.port, witness=False, store=pg_url)
    gateways = [gateway_for(anchor, tmp_path, mosquitto, name) for name in ("gw-1", "gw-2")]
    try:
        anchor.start()
        second = anchor.start_worker("worker-2")
        anchor.wait_subscribed()
        for g in gateways:
            g.feed(weight_lines(DEVICES, 700))
            g.start()
        wait_until(lambda: anchor.status()["events"] >= 800, 60, "events flowing")
        second.kill()  # one worker dies mid-stream; the shared subscription moves on
        anchor.procs.remove(second)
        anchor.start_worker("worker-2")
        expected = 2 * (2 * 700 + 1)
        status = anchor.wait_status(lambda s: s["events"] == expected and s["unsequenced"] == 0)
        assert status["log_size"] == expected + 2
        for g in gateways:
            g.wait_status(lambda s: s["outbox_depth"] == 0)
            for device in DEVICES:
                chain_complete(anchor, g.gateway, device, 700)
        indexes = sorted(
            r[0]
            for r in anchor.query(
                "SELECT leaf_index FROM events UNION ALL SELECT leaf_index FROM key_records"
            )
        )
        assert indexes == list(range(expected + 2))
        workers = dict(anchor.query("SELECT worker, COUNT(*) FROM events GROUP BY worker"))
        assert set(workers) == {"worker-1", "worker-2"}, workers  # both took a share
        assert anchor.query("SELECT COUNT(*) FROM chain_records") == [(0,)]
        audit = cli("audit", "--config", str(anchor.config_path), check=False)
        assert audit.returncode == 0, audit.stdout + audit.stderr
    finally:
        for g in gateways:
            g.stop()
        anchor.stop()
