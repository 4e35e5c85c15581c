"""End to end against a real Mosquitto: the gateway process, the broker, a receipt responder.

Every check reads what the responder (standing in for the anchor) holds: each device's chain
gapless from 1, prev-linked, no seq used for two different events, and the readings in the
order they were fed — whatever was killed or cut on the way.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from gateway_rig import GATEWAY, GatewayRig, assert_chains, grams_in_seq_order, weight_lines
from netproxy import UplinkProxy
from servers import PLEDGEWATCH_ACL, MosquittoServer

DEVICES = ["lc-a1", "lc-a2", "lc-b1"]
# Counts below include the one HEARTBEAT the gateway signs for itself when it starts.
pytestmark = pytest.mark.slow


def rig_for(tmp_path: Path, broker: MosquittoServer, **kwargs: object) -> GatewayRig:
    return GatewayRig(tmp_path / "gw", broker.port, **kwargs)  # type: ignore[arg-type]


def test_publish_and_receipt_round_trip(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    rig = rig_for(tmp_path, mosquitto, resend_after_s=120)  # no timed resend: exact counts
    responder = rig.responder()
    try:
        rig.feed(weight_lines(DEVICES, 300))
        rig.start()
        assert rig.wait_delivered(responder, 901, timeout=30) == 901
        status = rig.wait_status(lambda s: s["outbox_depth"] == 0)
        ledger = responder.snapshot()
        assert_chains(ledger, rig.key.public_key, dict.fromkeys(DEVICES, 300))
        for device in DEVICES:
            assert grams_in_seq_order(ledger, device) == list(range(300))
        assert status["devices"] == {**dict.fromkeys(DEVICES, 300), GATEWAY: 1}
        assert status["last_receipt_age_s"] is not None
        # Regression (bench find): the first batch after connect was published twice.
        assert status["counters"].get("receipt_unknown", 0) == 0  # type: ignore[union-attr]
        assert responder.snapshot().deliveries == 901
        assert rig.stop() == 0
    finally:
        rig.stop()
        responder.stop()


def test_broker_kill_9_mid_stream_loses_and_duplicates_nothing(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    rig = rig_for(tmp_path, mosquitto)
    responder = rig.responder()
    try:
        rig.feed(weight_lines(DEVICES, 1000))
        rig.start()
        assert rig.wait_delivered(responder, 300, timeout=30) >= 300
        mosquitto.kill()
        rig.feed(weight_lines(DEVICES, 1000, start=1000))
        time.sleep(2)
        mosquitto.restart()
        assert rig.wait_delivered(responder, 6001, timeout=60) == 6001
        rig.wait_status(lambda s: s["outbox_depth"] == 0)
        ledger = responder.snapshot()
        assert_chains(ledger, rig.key.public_key, dict.fromkeys(DEVICES, 2000))
        for device in DEVICES:
            assert grams_in_seq_order(ledger, device) == list(range(2000))
    finally:
        rig.stop()
        responder.stop()


def test_uplink_down_then_back(tmp_path: Path, mosquitto: MosquittoServer) -> None:
    proxy = UplinkProxy("127.0.0.1", mosquitto.port)
    proxy.start()
    rig = GatewayRig(tmp_path / "gw", proxy.port)
    responder = rig.responder(port=mosquitto.port)
    try:
        rig.feed(weight_lines(DEVICES, 200))
        rig.start()
        assert rig.wait_delivered(responder, 601, timeout=30) == 601
        proxy.cut()
        rig.feed(weight_lines(DEVICES, 500, start=200))
        rig.wait_status(
            lambda s: (
                s["outbox_depth"] >= 1500 and s["health"] and "broker_down" in s["health"]["alarms"]
            )
        )
        time.sleep(1)
        proxy.restore()
        assert rig.wait_delivered(responder, 2101, timeout=60) == 2101
        rig.wait_status(lambda s: s["outbox_depth"] == 0)
        assert_chains(responder.snapshot(), rig.key.public_key, dict.fromkeys(DEVICES, 700))
    finally:
        rig.stop()
        responder.stop()
        proxy.close()


def test_gateway_kill_9_and_restart_never_skips_reuses_or_forks(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    rig = rig_for(tmp_path, mosquitto)
    responder = rig.responder()
    try:
        rig.feed(weight_lines(DEVICES, 2000))
        for _ in range(3):
            rig.start()
            time.sleep(0.6)
            rig.kill()
        # The jsonl source replays its file on every start (it has no cursor), so each run
        # signs the same readings again as *new* events with the next seqs: what matters is
        # that the chain the gateway committed is what arrives, whole and unforked.
        rig.start()
        status = rig.wait_status(lambda s: s["outbox_depth"] == 0 and s["devices"], timeout=60)
        heads = status["devices"]
        assert isinstance(heads, dict)
        total = sum(heads.values())
        assert rig.wait_delivered(responder, total, timeout=30) == total
        assert_chains(responder.snapshot(), rig.key.public_key, heads)
    finally:
        rig.stop()
        responder.stop()


def test_outbox_full_pushes_back_raises_alarm_and_loses_nothing(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    rig = rig_for(tmp_path, mosquitto, outbox_max=150)
    responder = rig.responder()
    responder.paused.set()
    try:
        rig.feed(weight_lines(DEVICES, 200))
        rig.start()
        status = rig.wait_status(
            lambda s: (
                s["outbox_depth"] == 150 and s["health"] and "outbox_full" in s["health"]["alarms"]
            )
        )
        assert status["health"]["state"] == "alarm"  # type: ignore[index]
        responder.paused.clear()
        assert rig.wait_delivered(responder, 601, timeout=60) == 601
        rig.wait_status(
            lambda s: s["outbox_depth"] == 0 and "outbox_full" not in s["health"]["alarms"]
        )
        ledger = responder.snapshot()
        assert_chains(ledger, rig.key.public_key, dict.fromkeys(DEVICES, 200))
        for device in DEVICES:
            assert grams_in_seq_order(ledger, device) == list(range(200))
    finally:
        rig.stop()
        responder.stop()


def test_malformed_readings_are_counted_and_never_crash(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    rig = rig_for(tmp_path, mosquitto)
    responder = rig.responder()
    good = weight_lines(["lc-a1"], 20)
    bad = [
        "not json at all",
        json.dumps({"device": "lc-a1", "kind": "WEIGHT", "ts_ms": 1, "bay": "A1", "grams": 1.5}),
        json.dumps({"device": "lc-a1", "kind": "EXPLODE", "ts_ms": 1}),
        json.dumps({"device": "lc-a1", "kind": "LOAD", "ts_ms": 1, "qty": -3}),
        json.dumps([1, 2, 3]),
        "\udcff".encode("utf-8", "surrogateescape").decode("latin-1"),
    ]
    try:
        rig.feed(good[:10] + bad + good[10:])
        rig.start()
        assert rig.wait_delivered(responder, 21, timeout=30) == 21
        status = rig.wait_status(lambda s: s["counters"].get("malformed:feed", 0) == len(bad))
        assert status["devices"] == {"lc-a1": 20, GATEWAY: 1}
        assert rig.proc is not None and rig.proc.poll() is None
        assert_chains(responder.snapshot(), rig.key.public_key, {"lc-a1": 20})
    finally:
        rig.stop()
        responder.stop()


def test_tls_password_and_acl_production_setup(tmp_path: Path, mosquitto_factory) -> None:  # type: ignore[no-untyped-def]
    broker = mosquitto_factory(
        tls=True, users={GATEWAY: "gw-secret", "anchor": "anchor-secret"}, acl=PLEDGEWATCH_ACL
    )
    rig = GatewayRig(
        tmp_path / "gw",
        broker.tls_port,
        mqtt_extra={
            "tls": True,
            "ca_file": str(broker.ca_path),
            "username": GATEWAY,
            "password": "gw-secret",
        },
    )
    responder = rig.responder(port=broker.port, username="anchor", password="anchor-secret")
    try:
        rig.feed(weight_lines(DEVICES, 50))
        rig.start()
        assert rig.wait_delivered(responder, 151, timeout=30) == 151
        rig.wait_status(lambda s: s["outbox_depth"] == 0)
        assert_chains(responder.snapshot(), rig.key.public_key, dict.fromkeys(DEVICES, 50))
    finally:
        rig.stop()
        responder.stop()


def test_sighup_reload_swaps_sensors_and_never_touches_the_outbox(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    rig = rig_for(tmp_path, mosquitto)
    responder = rig.responder()
    responder.paused.set()  # keep events in the outbox across the reloads
    try:
        rig.feed(weight_lines(["lc-a1"], 100))
        rig.start()
        rig.wait_status(lambda s: s["outbox_depth"] == 101)
        second = rig.workdir / "second.jsonl"
        second.write_text("\n".join(weight_lines(["lc-a2"], 50)) + "\n")
        rig.write_config(source=second, extra="[not valid toml")
        rig.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while "config reload refused" not in rig.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        rig.check_alive()
        rig.write_config(source=second)
        rig.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        status = rig.wait_status(lambda s: s["outbox_depth"] == 151)
        assert status["devices"] == {"lc-a1": 100, "lc-a2": 50, GATEWAY: 1}
        responder.paused.clear()
        assert rig.wait_delivered(responder, 151, timeout=30) == 151
        assert_chains(responder.snapshot(), rig.key.public_key, {"lc-a1": 100, "lc-a2": 50})
        assert "config reload refused" in rig.log()
        assert "config reloaded: 1 sensors" in rig.log()
        assert rig.stop() == 0
    finally:
        rig.stop()
        responder.stop()
