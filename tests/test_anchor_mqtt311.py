"""The anchor's MQTT 3.1.1 mode (``[mqtt] protocol = 4``), for brokers without MQTT 5 such as
amqtt (the demo's in-process broker): plain subscription, persistent session, manual acks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from anchor.config import MqttSection, parse
from anchor.subscriber import Subscriber
from gateway.demo.brokers import EmbeddedBroker, free_port
from pledgewatch.topics import EVENTS_FILTER

from anchor_rig import AnchorRig, wait_until
from gateway_rig import WAREHOUSE, GatewayRig, weight_lines

DEVICES = ["lc-a1", "lc-a2"]


def mqtt_section(protocol: int) -> MqttSection:
    return MqttSection("127.0.0.1", 1883, None, None, False, None, "grp", 30, protocol=protocol)


def test_protocol_4_subscribes_without_share_and_5_with_it() -> None:
    assert Subscriber(mqtt_section(4), "w").events_filter == EVENTS_FILTER
    assert Subscriber(mqtt_section(5), "w").events_filter == f"$share/grp/{EVENTS_FILTER}"


def test_protocol_other_than_4_or_5_is_a_config_problem(tmp_path: Path) -> None:
    raw: dict[str, object] = {
        "anchor": {"origin": "o", "key_file": "k"},
        "mqtt": {"host": "127.0.0.1", "protocol": 3},
    }
    problems: list[str] = []
    parse(raw, tmp_path, problems)
    assert any("mqtt.protocol" in p for p in problems), problems


@pytest.fixture
def amqtt_broker() -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def test_anchor_on_amqtt_stores_every_event_and_its_receipts_empty_the_outbox(
    tmp_path: Path, amqtt_broker: EmbeddedBroker
) -> None:
    anchor = AnchorRig(tmp_path / "anchor", amqtt_broker.port, witness=False)
    text = anchor.config_path.read_text()
    anchor.config_path.write_text(text.replace("[mqtt]\n", "[mqtt]\nprotocol = 4\n", 1))
    gateway = GatewayRig(
        tmp_path / "gw", amqtt_broker.port, anchor_key=anchor.key, mqtt_extra={"protocol": 4}
    )
    anchor.enrol(WAREHOUSE, "gw-1", gateway.key.public_key)
    try:
        anchor.start()
        log = anchor.anchor_proc.log_path
        wait_until(
            lambda: f"subscribed to {EVENTS_FILTER}" in log.read_text(errors="replace"),
            20,
            "the anchor's plain 3.1.1 subscription",
        )
        gateway.feed(weight_lines(DEVICES, 200))
        gateway.start()
        expected = 2 * 200 + 1  # + the gateway's start heartbeat
        status = anchor.wait_status(lambda s: s["events"] == expected and s["unsequenced"] == 0)
        assert status["quarantined"] == 0
        gateway.wait_status(lambda s: s["outbox_depth"] == 0)  # receipts came back over 3.1.1
        for device in DEVICES:
            seqs = anchor.query("SELECT seq FROM events WHERE device = ? ORDER BY seq", (device,))
            assert [s[0] for s in seqs] == list(range(1, 201))
    finally:
        gateway.stop()
        anchor.stop()
