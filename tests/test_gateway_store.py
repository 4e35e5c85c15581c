"""Gateway durability without a broker: builder, outbox, key store, config."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from devices.base import Reading
from gateway import config as gateway_config
from gateway import keystore
from gateway.builder import EventBuilder
from gateway.errors import ConfigError, GatewayError, KeyStoreError, OutboxFull
from gateway.outbox import Outbox
from gateway.store import GatewayStore, Identity
from pledgewatch.events import ZERO_HASH, Kind, SignedEvent
from pledgewatch.signing import SigningKey, verify_event

KEY = SigningKey(bytes(range(32)))
IDENT = Identity("wh-1", "gw-1", KEY.key_id)


def weight(device: str, grams: int, ts: int = 1_700_000_000_000) -> Reading:
    return Reading(device=device, kind=Kind.WEIGHT, ts_ms=ts, bay="A1", grams=grams)


def open_gateway(path: Path, capacity: int = 100) -> tuple[GatewayStore, Outbox, EventBuilder]:
    store = GatewayStore(path)
    store.open(IDENT)
    outbox = Outbox(store, capacity)
    return store, outbox, EventBuilder(store, outbox, KEY, "wh-1", "gw-1")


def test_sequences_are_gapless_chained_and_survive_reopen(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    store, outbox, builder = open_gateway(db)
    builder.append([weight("lc-1", g) for g in range(5)], 1)
    store.close()
    store, outbox, builder = open_gateway(db)
    builder.append([weight("lc-1", 9), weight("lc-2", 1)], 2)
    entries = outbox.peek(0, 100)
    chain = [SignedEvent.from_wire(e.wire) for e in entries if e.device == "lc-1"]
    assert [s.event.seq for s in chain] == [1, 2, 3, 4, 5, 6]
    prev = ZERO_HASH
    for signed in chain:
        verify_event(signed, KEY.public_key)
        assert signed.event.prev == prev
        prev = signed.event_id
    assert [e.seq for e in entries if e.device == "lc-2"] == [1]


def test_peek_returns_the_same_batch_until_acked(tmp_path: Path) -> None:
    _, outbox, builder = open_gateway(tmp_path / "gw.db")
    builder.append([weight("lc-1", g) for g in range(3)], 1)
    first = outbox.peek(0, 2)
    assert outbox.peek(0, 2) == first
    assert outbox.ack([first[0].event_id, "f" * 64], now_ms=5) == 1
    assert [e.seq for e in outbox.peek(0, 10)] == [2, 3]
    assert outbox.depth == 2


def test_full_outbox_pushes_back_and_keeps_what_it_has(tmp_path: Path) -> None:
    _, outbox, builder = open_gateway(tmp_path / "gw.db", capacity=3)
    result = builder.append([weight("lc-1", g) for g in range(5)], 1)
    assert len(result.accepted) == 3
    assert [r.grams for r in result.deferred] == [3, 4]
    with pytest.raises(OutboxFull):
        builder.append(list(result.deferred), 2)
    assert outbox.depth == 3
    outbox.ack([outbox.peek(0, 1)[0].event_id], 3)
    again = builder.append(list(result.deferred), 4)
    assert [s.event.seq for s in again.accepted] == [4]
    assert [e.seq for e in outbox.peek(0, 10)] == [2, 3, 4]


def test_invalid_readings_are_counted_not_signed_and_use_no_seq(tmp_path: Path) -> None:
    store, _outbox, builder = open_gateway(tmp_path / "gw.db")
    bad = Reading(device="lc-1", kind=Kind.WEIGHT, ts_ms=1, bay="A1")  # no grams
    result = builder.append([weight("lc-1", 1), bad, weight("lc-1", 2)], 1)
    assert [s.event.seq for s in result.accepted] == [1, 2]
    assert "grams: required" in result.invalid[0].reason
    counters = dict(store.conn.execute("SELECT name, value FROM counters").fetchall())
    assert counters["invalid_reading:lc-1"] == 1


def test_state_db_bound_to_its_identity(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    store, _, _ = open_gateway(db)
    store.close()
    other = GatewayStore(db)
    with pytest.raises(GatewayError, match="another gateway identity"):
        other.open(Identity("wh-1", "gw-2", KEY.key_id))


KILL_PROBE = """
import sys
from pathlib import Path
from devices.base import Reading
from gateway.builder import EventBuilder
from gateway.outbox import Outbox
from gateway.store import GatewayStore, Identity
from pledgewatch.events import Kind
from pledgewatch.signing import SigningKey
key = SigningKey(bytes(range(32)))
store = GatewayStore(Path(sys.argv[1])); store.open(Identity("wh-1", "gw-1", key.key_id))
outbox = Outbox(store, 10**9)
builder = EventBuilder(store, outbox, key, "wh-1", "gw-1")
i = 0
while True:
    batch = [Reading("lc-1", Kind.WEIGHT, t, bay="A1", grams=t) for t in range(i, i + 50)]
    builder.append(batch, i)
    i += 50
    print(i, flush=True)
"""


def test_kill_9_mid_stream_never_skips_reuses_or_forks_a_seq(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_PROBE, str(db)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for _ in range(4):
            proc.stdout.readline()
        proc.kill()
        proc.wait()
    _store, outbox, builder = open_gateway(db, capacity=10**9)
    entries = outbox.peek(0, 10**6)
    seqs = [e.seq for e in entries]
    assert seqs == list(range(1, len(seqs) + 1))
    assert builder.heads()["lc-1"].seq == len(seqs)
    prev = ZERO_HASH
    for entry in entries:
        signed = SignedEvent.from_wire(entry.wire)
        assert signed.event.prev == prev
        prev = signed.event_id


def test_keystore_writes_0600_and_refuses_loose_or_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "k" / "gateway.key"
    key = keystore.generate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keystore.load(path).key_id == key.key_id
    with pytest.raises(KeyStoreError, match="already exists"):
        keystore.generate(path)
    os.chmod(path, 0o644)
    with pytest.raises(KeyStoreError, match="mode 644"):
        keystore.load(path)
    os.chmod(path, 0o600)
    path.write_text("nonsense\n")
    with pytest.raises(KeyStoreError, match="want 2 lines"):
        keystore.load(path)


def test_bad_config_names_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(
        textwrap.dedent("""
        [gateway]
        id = "GW 1"
        key_file = "k"
        state_db = "s.db"
        heartbeat_interval_s = 0
        colour = "blue"

        [anchor]
        public_key = "abcd"

        [mqtt]
        port = 70000
        tls = "yes"

        [[sensors]]
        device = "lc-1"
        driver = "hx711"
        options = { gain = 1.5 }

        [[sensors]]
        device = "lc-1"
        driver = "door"
    """)
    )
    with pytest.raises(ConfigError) as info:
        gateway_config.load(path)
    text = str(info.value)
    for fragment in [
        "gateway.id",
        "gateway.warehouse: missing",
        "heartbeat_interval_s: got 0",
        "gateway.colour: unknown key",
        "anchor.public_key",
        "mqtt.host: missing",
        "mqtt.port: got 70000",
        "mqtt.tls: got 'yes'",
        "sensors[0].options.gain",
        "'lc-1' appears twice",
    ]:
        assert fragment in text, fragment
    assert len(info.value.problems) >= 10
