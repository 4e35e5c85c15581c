"""`pledgewatch alerts …` end to end: list/ack/show/replay/deliver/outbox/endpoints, the
evidence export (proof files that verify offline), and a deliverer process killed with
SIGKILL in the middle of a delivery: after a restart nothing is lost.

Delivery is at-least-once with idempotent ids: a message can reach the receiver twice only
if the receiver answered 2xx but the answer never got back through to the killed process
(the message in flight at the kill); every other message arrives exactly once.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from anchor import keyfile
from anchor.alerts.lifecycle import apply_conditions
from anchor.alerts.model import Scope
from anchor.config import LogSection
from anchor.ingest import Ingestor
from anchor.log import Sequencer
from anchor.registry import enrol, load_keys
from anchor.store.db import Database
from pledgewatch.cli import main
from pledgewatch.prooffile import verify_proof_file
from pledgewatch.signing import SigningKey

from alerts_rig import EVENT_A, T0, Receiver, condition
from store_rig import BASE_MS, Gateway, open_store

SECRET_TEXT = "whsec_" + base64.b64encode(b"pledgewatch-cli-test-secret-0032").decode()
SCOPE = Scope.of(["wh-1"])
ORIGIN = "pledgewatch.test/log"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    r.up()
    yield r
    r.down()


def write_config(folder: Path, receiver: Receiver, *, extra: str = "") -> Path:
    keyfile.generate(folder / "alerts.key", what="alert signing key")
    path = folder / "anchor.toml"
    path.write_text(
        f"""
[anchor]
origin = "{ORIGIN}"
key_file = "anchor.key"
store = "sqlite:anchor.db"

[mqtt]
host = "127.0.0.1"
port = 1883

[alerts]
signing_key_file = "alerts.key"
deliver_every_ms = 50

[[webhooks]]
name = "desk"
url = "{receiver.url("/desk")}"
secret = "{SECRET_TEXT}"
timeout_s = 1
{extra}
"""
    )
    return path


def store(folder: Path) -> Database:
    return open_store(f"sqlite:///{(folder / 'anchor.db').resolve()}")


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["alerts", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_lists_acknowledges_delivers_and_replays(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, receiver)
    db = store(tmp_path)
    apply_conditions(db, [condition(subject="WR-1"), condition(subject="WR-2")], T0, scope=SCOPE)
    db.close()
    c = str(config)

    code, out, _ = cli(capsys, "list", "--config", c, "--json")
    assert code == 0
    listed = json.loads(out)
    assert [a["subject"] for a in listed] == ["WR-2", "WR-1"]
    assert listed[0]["evidence"] == [EVENT_A]

    assert cli(capsys, "ack", "1", "--by", "officer li", "--config", c)[0] == 0
    code, out, _ = cli(capsys, "list", "--state", "acknowledged", "--config", c, "--json")
    assert [a["acknowledged_by"] for a in json.loads(out)] == ["officer li"]
    code, out, _ = cli(capsys, "ack", "1", "--by", "officer wu", "--config", c)
    assert code == 0 and "already acknowledged" in out

    code, out, _ = cli(capsys, "deliver", "--once", "--config", c)
    assert code == 0 and "routed 3, attempted 3" in out
    assert sum(receiver.delivered().values()) == 3
    for request in receiver.requests():  # both signatures on every request
        versions = [s[: s.index(",")] for s in request.headers["webhook-signature"].split(" ")]
        assert versions == ["v1", "v1a"]

    code, out, _ = cli(capsys, "show", "1", "--config", c, "--json")
    shown = json.loads(out)
    assert [t["kind"] for t in shown["transitions"]] == ["opened", "acknowledged"]
    assert {d["state"] for d in shown["deliveries"]} == {"delivered"}

    code, out, _ = cli(capsys, "replay", "1", "--config", c)
    assert code == 0 and "2 message(s) queued" in out
    cli(capsys, "deliver", "--once", "--config", c)
    ids = [t["webhook_id"] for t in shown["transitions"]]
    assert [receiver.delivered()[i] for i in ids] == [2, 2]

    code, out, _ = cli(capsys, "outbox", "--config", c, "--json")
    assert json.loads(out) == []
    code, out, _ = cli(capsys, "outbox", "--all", "--config", c, "--json")
    assert len(json.loads(out)) == 5
    code, out, _ = cli(capsys, "endpoints", "--config", c, "--json")
    assert json.loads(out)[0] | {"url": None} == {
        "name": "desk",
        "url": None,
        "disabled": False,
        "disabled_reason": None,
        "paused_until_ms": None,
        "pending": 0,
        "dead": 0,
    }
    code, out, _ = cli(capsys, "public-key", "--config", c)
    key = keyfile.load(tmp_path / "alerts.key")
    assert out.strip() == "whpk_" + base64.b64encode(key.public_key).decode()

    code, _, err = cli(capsys, "ack", "99", "--by", "x", "--config", c)
    assert code == 1 and "no alert 99" in err
    code, _, err = cli(capsys, "replay", "1", "--endpoint", "nope", "--config", c)
    assert code == 2 and "nope" in err


def test_cli_refuses_a_bad_config_listing_every_problem(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = '\n[[webhooks]]\nname = "desk"\nurl = "http://bank.example/x"\nrules = ["NOPE"]\n'
    config = write_config(tmp_path, receiver, extra=extra)
    code, _, err = cli(capsys, "list", "--config", str(config))
    assert code == 2
    for problem in ("used twice", "want https://", "unknown ['NOPE']"):
        assert problem in err


def test_cli_exports_evidence_that_verifies_offline(
    tmp_path: Path, receiver: Receiver, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, receiver)
    db = store(tmp_path)
    gw = Gateway("wh-1", "gw-1")
    enrol(db, "wh-1", "gw-1", gw.key.public_key, now_ms=BASE_MS)
    events = gw.chain("scale-1", 3)
    ingestor = Ingestor(load_keys(db.read()), "worker-1")
    with db.transaction() as tx:
        ingestor.process(tx, [gw.message(e) for e in events[:2]], BASE_MS)
    anchor_key = SigningKey(bytes([5]) * 32)
    log_config = LogSection(checkpoint_interval_ms=1, checkpoint_max_entries=1, gap_timeout_s=60)
    Sequencer(db, ORIGIN, anchor_key, log_config).step(BASE_MS + 10)
    with db.transaction() as tx:  # stored, not yet in the log
        ingestor.process(tx, [gw.message(events[2])], BASE_MS + 20)
    proven, pending = events[0].event_id, events[2].event_id
    unknown = "c" * 64
    apply_conditions(db, [condition(evidence=(proven, pending, unknown))], T0, scope=SCOPE)
    db.close()

    out_dir = tmp_path / "evidence"
    code, out, _ = cli(capsys, "evidence", "1", "-o", str(out_dir), "--config", str(config))
    assert code == 1  # not every event is provable yet
    assert "wrote 1 proof file(s)" in out
    index = json.loads((out_dir / "index.json").read_text())
    assert index["alert"]["alert_id"] == 1
    by_id = {e["event_id"]: e for e in index["events"]}
    assert by_id[proven]["file"] == f"{proven}.proof.json"
    assert "not yet in the log" in by_id[pending]["reason"]
    assert "no stored event" in by_id[unknown]["reason"]
    data = (out_dir / f"{proven}.proof.json").read_bytes()
    verified = verify_proof_file(data, anchor_key=anchor_key.public_key)
    assert (verified.signed.event_id, verified.origin) == (proven, ORIGIN)


def deliverer_process(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.Popen(
        [sys.executable, "-m", "pledgewatch.cli", "alerts", "deliver", "--config", str(config)],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def test_deliverer_killed_mid_delivery_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    config = write_config(tmp_path, receiver)
    db = store(tmp_path)
    now = time.time_ns() // 1_000_000
    conditions = [condition(subject=f"WR-{i}") for i in range(12)]
    apply_conditions(db, conditions, now, scope=SCOPE)
    wanted = {r[0] for r in db.read().all("SELECT webhook_id FROM alert_transitions")}
    receiver.delay_s = 0.1  # every answer takes a while: the kill lands mid-request
    log = tmp_path / "deliver.log"

    first = deliverer_process(config, log)
    try:
        wait_until(lambda: len(receiver.requests()) >= 4 and receiver.busy(), 20, "4 + 1 busy")
        in_flight = receiver.busy()
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
    delivered_before = set(receiver.delivered())
    assert 0 < len(delivered_before) < len(wanted)

    second = deliverer_process(config, log)
    try:
        # The in-flight message's row stays claimed until its lease (timeout + margin) ends,
        # then it is sent again: wait for the store to say every row is delivered.
        undelivered = "SELECT COUNT(*) FROM webhook_outbox WHERE delivered_ms IS NULL"
        wait_until(lambda: db.read().one(undelivered)[0] == 0, 30, "every row delivered")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0
    finally:
        if second.poll() is None:
            second.kill()

    counts = receiver.delivered()
    assert set(counts) == wanted
    twice = {m for m, n in counts.items() if n > 1}
    assert twice <= in_flight, (twice, in_flight)  # only the message the kill interrupted
    assert all(n <= 2 for n in counts.values())
    db.close()
