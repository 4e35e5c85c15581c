"""Every delivery fault of the simulator ends in exactly its record at the anchor, nothing else.

The scenario's signed wire stream (devices.sim.stream.WireStream, with its ground truth) is
published to a real Mosquitto as the gateways would deliver it; on top, the test drops one
message (→ GAP) and has a gateway sign a second, different event for a seq it already used
(→ FORK). The anchor's raw tables are then compared with the ground truth.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from devices.sim.faults import FaultKind
from devices.sim.scenario import find_scenario, load_scenario
from devices.sim.stream import SimMessage, WireStream
from pledgewatch.events import SignedEvent
from pledgewatch.signing import sign_event

from anchor_rig import AnchorRig, wait_until
from servers import MosquittoServer

pytestmark = pytest.mark.slow
REFUSED = {FaultKind.WRONG_KEY: "unknown_key", FaultKind.TAMPERED_PAYLOAD: "bad_signature"}


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="test-fault-publisher",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.max_inflight_messages_set(100)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=30)
    finally:
        client.disconnect()
        client.loop_stop()


def test_injected_faults_end_in_exactly_the_expected_records(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    scenario = load_scenario(find_scenario("faults"))
    stream = WireStream(scenario)
    messages: list[SimMessage] = list(stream)
    truth = stream.ground_truth()
    anchor = AnchorRig(tmp_path / "anchor", mosquitto.port, witness=False, gap_timeout_s=1)
    for gateway, public_key in stream.public_keys().items():
        anchor.enrol(scenario.warehouse, gateway, public_key)

    clean = [i for i, m in enumerate(messages) if m.fault is None]
    dropped = messages[clean[len(clean) // 2]]
    dropped_event = SignedEvent.from_wire(dropped.payload).event
    victim = SignedEvent.from_wire(messages[clean[len(clean) // 3]].payload)
    fork = sign_event(
        dataclasses.replace(victim.event, ts_ms=victim.event.ts_ms + 1),
        stream.keys[victim.event.gateway],
    )
    wire = [(m.topic, m.payload) for m in messages if m is not dropped]
    wire.append(
        (messages[0].topic.replace(messages[0].gateway, victim.event.gateway), fork.to_wire())
    )

    valid = {
        SignedEvent.from_wire(m.payload).event_id
        for m in messages
        if m.fault not in REFUSED and m is not dropped
    } | {fork.event_id}
    try:
        anchor.start()
        anchor.wait_subscribed()
        publish_all(mosquitto.port, wire)
        wait_until(lambda: anchor.status()["events"] == len(valid), 60, "all valid events")
        wait_until(
            lambda: anchor.query("SELECT COUNT(*) FROM chain_records WHERE kind = 'GAP'") != [(0,)],
            30,
            "the GAP record",
        )
        time.sleep(0.5)
        stored = {r[0] for r in anchor.query("SELECT event_id FROM events")}
        assert stored == valid

        refused = sorted((r[0],) for r in anchor.query("SELECT reason FROM quarantine"))
        want = sorted((REFUSED[t.kind],) for t in truth if t.kind in REFUSED)
        assert refused == want
        wrong_key_ids = {e for t in truth if t.kind is FaultKind.WRONG_KEY for e in t.event_ids}
        quarantined_ids = {
            r[0]
            for r in anchor.query("SELECT event_id FROM quarantine WHERE reason = 'unknown_key'")
        }
        assert quarantined_ids == wrong_key_ids

        # A refused message's seq never arrives in valid form: a GAP, exactly like the
        # dropped message. The second event for one seq is a FORK. Nothing else.
        holes = [SignedEvent.from_wire(m.payload).event for m in messages if m.fault in REFUSED]
        holes.append(dropped_event)
        want_records = sorted(
            [("GAP", e.gateway, e.device, e.seq, e.seq) for e in holes]
            + [
                (
                    "FORK",
                    victim.event.gateway,
                    victim.event.device,
                    victim.event.seq,
                    victim.event.seq,
                )
            ]
        )
        wait_until(
            lambda: len(anchor.query("SELECT id FROM chain_records")) >= len(want_records),
            30,
            "every GAP record",
        )
        records = sorted(
            anchor.query("SELECT kind, gateway, device, seq_from, seq_to FROM chain_records")
        )
        assert records == want_records
    finally:
        anchor.stop()
