"""Security checks not covered elsewhere (issue 6 §3), on real servers.

Covered already and not repeated: every quarantine reason at the ingest level, including a key
of another gateway and a revoked key (test_store_backends.py::test_quarantine_reasons); the
production broker setup with TLS, passwords and the ACL carrying an honest gateway's traffic
(test_gateway_delivery.py); webhook signatures failing with a wrong secret, another key, a
changed body, id or timestamp (test_alerts_webhooks.py); a hostile flood with strangers' keys
and another gateway's enrolled key (test_hostile_flood.py). The read API's tokens are tested
with the API itself.

New here: the broker's ACL refusing one gateway publishing on another's topic or reading
another's receipts (MQTT 5 shows the refusal), anonymous and wrong-password logins refused;
and, through the real anchor: a gateway's own key on its own topic for another gateway's
events refused with no receipt released; a key revoked with ``pledgewatch anchor revoke``
while the anchor runs refused from then on (and from ``--at-ms`` for a backdated event).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.reasoncodes import ReasonCode

from pledgewatch.events import ZERO_HASH, Event, Kind, SignedEvent
from pledgewatch.receipts import ReceiptStatus, parse_receipt
from pledgewatch.signing import SigningKey, sign_event
from pledgewatch.topics import events_topic, receipts_topic

from anchor_rig import AnchorRig, cli, wait_until
from servers import PLEDGEWATCH_ACL, MosquittoServer

WH = "wh-1"
PASSWORDS = {"gw-1": "gw1-secret", "gw-2": "gw2-secret", "anchor": "anchor-secret"}


class Peer:
    """A paho MQTT 5 client that records what the broker says back."""

    def __init__(self, port: int, client_id: str, user: str | None, password: str | None) -> None:
        self.connack: ReasonCode | None = None
        self.pubacks: dict[int, ReasonCode] = {}
        self.subacks: dict[int, list[ReasonCode]] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.changed = threading.Condition()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.wait(lambda: self.connack is not None, "CONNACK")

    def _note(self, action: Callable[[], None]) -> None:
        with self.changed:
            action()
            self.changed.notify_all()

    def _on_connect(self, c: object, u: object, f: object, rc: ReasonCode, p: object) -> None:
        self._note(lambda: setattr(self, "connack", rc))

    def _on_publish(self, c: object, u: object, mid: int, rc: ReasonCode, p: object) -> None:
        self._note(lambda: self.pubacks.__setitem__(mid, rc))

    def _on_subscribe(
        self, c: object, u: object, mid: int, rcs: list[ReasonCode], p: object
    ) -> None:
        self._note(lambda: self.subacks.__setitem__(mid, rcs))

    def _on_message(self, c: object, u: object, msg: mqtt.MQTTMessage) -> None:
        self._note(lambda: self.messages.append((msg.topic, bytes(msg.payload))))

    def wait(self, ready: Callable[[], bool], what: str, timeout: float = 20) -> None:
        with self.changed:
            if not self.changed.wait_for(ready, timeout):
                raise AssertionError(f"timed out waiting for {what}")

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        mid = self.client.publish(topic, payload, qos=1).mid
        self.wait(lambda: mid in self.pubacks, f"PUBACK for {topic}")
        return self.pubacks[mid]

    def subscribe(self, topic: str) -> ReasonCode:
        rc, mid = self.client.subscribe(topic, qos=1)
        assert rc == mqtt.MQTT_ERR_SUCCESS and mid is not None, rc
        self.wait(lambda: mid in self.subacks, f"SUBACK for {topic}")
        return self.subacks[mid][0]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def event(gateway: str, device: str, seq: int = 1, prev: str = ZERO_HASH, **kw: object) -> Event:
    fields: dict[str, object] = dict(
        kind=Kind.WEIGHT, warehouse=WH, gateway=gateway, device=device, seq=seq, prev=prev,
        ts_ms=time.time_ns() // 1_000_000, bay="a1", grams=100,
    )  # fmt: skip
    fields.update(kw)
    return Event(**fields)  # type: ignore[arg-type]


# ---- the broker's ACL -------------------------------------------------------------------------


def test_the_acl_stops_a_gateway_writing_or_reading_as_another(
    mosquitto_factory: Callable[..., MosquittoServer],
) -> None:
    broker = mosquitto_factory(users=PASSWORDS, acl=PLEDGEWATCH_ACL)
    anchor = Peer(broker.port, "sec-anchor", "anchor", PASSWORDS["anchor"])
    gw1 = Peer(broker.port, "sec-gw-1", "gw-1", PASSWORDS["gw-1"])
    gw2 = Peer(broker.port, "sec-gw-2", "gw-2", PASSWORDS["gw-2"])
    peers = [anchor, gw1, gw2]
    try:
        assert not anchor.subscribe("pledgewatch/v1/+/+/events").is_failure
        assert not gw1.subscribe(receipts_topic(WH, "gw-1")).is_failure
        key2 = SigningKey(bytes([2]) * 32)
        own = sign_event(event("gw-2", "d1"), key2).to_wire()
        forged = sign_event(event("gw-1", "d1"), key2).to_wire()

        # Control: gw-2 may publish its own events, and the anchor gets them.
        assert not gw2.publish(events_topic(WH, "gw-2"), own).is_failure
        anchor.wait(lambda: (events_topic(WH, "gw-2"), own) in anchor.messages, "gw-2's event")

        # gw-2 on gw-1's events topic: refused at PUBACK (0x87), never delivered.
        refused = gw2.publish(events_topic(WH, "gw-1"), forged)
        assert refused.is_failure and refused.value == 0x87, refused
        # gw-2 may not write gw-1's receipts either (a forged release of gw-1's outbox).
        refused = gw2.publish(receipts_topic(WH, "gw-1"), b'{"receipt":{},"sig":""}')
        assert refused.is_failure and refused.value == 0x87, refused

        # gw-2 reading gw-1's receipts or everyone's events gets nothing.
        for topic in (receipts_topic(WH, "gw-1"), "pledgewatch/v1/+/+/events", "#"):
            gw2.subscribe(topic)
        marker = b"receipt for gw-1 only"
        assert not anchor.publish(receipts_topic(WH, "gw-1"), marker).is_failure
        assert not gw2.publish(events_topic(WH, "gw-2"), own + b" ").is_failure
        gw1.wait(lambda: (receipts_topic(WH, "gw-1"), marker) in gw1.messages, "gw-1's receipt")
        anchor.wait(lambda: len(anchor.messages) == 2, "the second gw-2 event")
        time.sleep(0.5)  # anything misrouted would have arrived with the messages above
        assert [t for t, _ in anchor.messages] == [events_topic(WH, "gw-2")] * 2
        assert gw2.messages == []
        assert gw1.messages == [(receipts_topic(WH, "gw-1"), marker)]
    finally:
        for peer in peers:
            peer.close()


@pytest.mark.parametrize(("user", "password"), [(None, None), ("gw-1", "wrong"), ("gw-9", "x")])
def test_anonymous_and_wrong_password_logins_are_refused(
    mosquitto_factory: Callable[..., MosquittoServer], user: str | None, password: str | None
) -> None:
    broker = mosquitto_factory(users=PASSWORDS, acl=PLEDGEWATCH_ACL)
    peer = Peer(broker.port, "sec-login", user, password)
    try:
        assert peer.connack is not None and peer.connack.is_failure, peer.connack
        assert peer.connack.value in (0x86, 0x87), peer.connack  # bad password / not authorized
    finally:
        peer.close()


# ---- the anchor's key registry, live ----------------------------------------------------------


def receipts_for(peer: Peer, gateway: str, anchor_key: bytes) -> list[tuple[str, ReceiptStatus]]:
    out = []
    for topic, payload in list(peer.messages):
        if topic == receipts_topic(WH, gateway):
            receipt = parse_receipt(payload, anchor_key)
            out += [(item.event_id, item.status) for item in receipt.items]
    return out


@pytest.mark.slow
def test_a_gateway_key_cannot_vouch_for_another_gateway(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    """gw-2's enrolled key signs events that claim to be gw-1's: on gw-1's topic (which only
    the ACL would stop) and on its own. Both are refused, nothing is stored, and gw-1 gets no
    receipt that would release anything from its outbox."""
    anchor = AnchorRig(tmp_path / "anchor", mosquitto.port, witness=False)
    key1, key2 = SigningKey(bytes([1]) * 32), SigningKey(bytes([2]) * 32)
    anchor.enrol(WH, "gw-1", key1.public_key)
    anchor.enrol(WH, "gw-2", key2.public_key)
    watcher: Peer | None = None
    try:
        anchor.start()
        anchor.wait_subscribed()
        watcher = Peer(mosquitto.port, "sec-watch", None, None)
        for gateway in ("gw-1", "gw-2"):
            watcher.subscribe(receipts_topic(WH, gateway))
        as_gw1 = sign_event(event("gw-1", "d1"), key2)
        as_gw1_on_own_topic = sign_event(event("gw-1", "d2"), key2)
        honest = sign_event(event("gw-1", "d3"), key1)
        watcher.publish(events_topic(WH, "gw-1"), as_gw1.to_wire())
        watcher.publish(events_topic(WH, "gw-2"), as_gw1_on_own_topic.to_wire())
        watcher.publish(events_topic(WH, "gw-1"), honest.to_wire())
        wait_until(lambda: anchor.status()["events"] == 1, 30, "the honest event")
        wait_until(lambda: anchor.status()["quarantined"] == 2, 30, "two refusals")
        quarantined = anchor.query("SELECT reason, event_id FROM quarantine ORDER BY id")
        assert quarantined == [
            ("key_gateway_mismatch", as_gw1.event_id),
            ("topic_mismatch", as_gw1_on_own_topic.event_id),
        ]
        assert anchor.query("SELECT event_id FROM events") == [(honest.event_id,)]
        watcher.wait(lambda: bool(receipts_for(watcher, "gw-1", anchor.key.public_key)), "receipt")
        time.sleep(1.0)  # receipts for a batch go out together; give stragglers a moment
        assert receipts_for(watcher, "gw-1", anchor.key.public_key) == [
            (honest.event_id, ReceiptStatus.STORED)
        ]
        assert receipts_for(watcher, "gw-2", anchor.key.public_key) == []
    finally:
        if watcher is not None:
            watcher.close()
        anchor.stop()


@pytest.mark.slow
def test_a_key_revoked_while_the_anchor_runs_is_refused_from_then_on(
    tmp_path: Path, mosquitto: MosquittoServer
) -> None:
    anchor = AnchorRig(tmp_path / "anchor", mosquitto.port, witness=False)
    old, new = SigningKey(bytes([5]) * 32), SigningKey(bytes([6]) * 32)
    anchor.enrol(WH, "gw-1", old.public_key)
    publisher: Peer | None = None
    try:
        anchor.start()
        anchor.wait_subscribed()
        publisher = Peer(mosquitto.port, "sec-revoke", None, None)
        publisher.subscribe(receipts_topic(WH, "gw-1"))
        before = sign_event(event("gw-1", "before"), old)
        publisher.publish(events_topic(WH, "gw-1"), before.to_wire())
        wait_until(lambda: anchor.status()["events"] == 1, 30, "the event before revocation")

        # Revoked from a minute ago (when it was stolen, say): events the thief dates inside
        # that minute are refused too. Events dated earlier still pass — the documented
        # validity window is about ts_ms, which the key holder chooses.
        revoked_at = time.time_ns() // 1_000_000 - 60_000
        cfg = str(anchor.config_path)
        cli("anchor", "revoke", "--config", cfg, "--key-id", old.key_id, "--at-ms", str(revoked_at))
        anchor.enrol(WH, "gw-1", new.public_key)  # rotation: the gateway's new key

        # The worker reloads the registry every few seconds: probe until the refusal starts,
        # each probe a fresh device so chains stay independent.
        refused_id = None
        for n in range(60):
            probe = sign_event(event("gw-1", f"probe-{n}", ts_ms=revoked_at + 1 + n), old)
            publisher.publish(events_topic(WH, "gw-1"), probe.to_wire())
            time.sleep(0.5)
            rows = anchor.query(
                "SELECT event_id FROM quarantine WHERE reason = 'key_revoked' AND event_id = ?",
                (probe.event_id,),
            )
            if rows:
                refused_id = probe.event_id
                break
        assert refused_id is not None, "the revoked key was never refused"
        probes_stored = cast(int, anchor.status()["events"])

        # From then on: the old key is refused for an event dated at the revocation point,
        # accepted for one dated before it, and the new key is accepted.
        backdated = sign_event(event("gw-1", "late", ts_ms=revoked_at), old)
        earlier = sign_event(event("gw-1", "earlier", ts_ms=revoked_at - 1), old)
        rotated = sign_event(event("gw-1", "after"), new)
        for signed in (backdated, earlier, rotated):
            publisher.publish(events_topic(WH, "gw-1"), signed.to_wire())
        wait_until(lambda: anchor.status()["events"] == probes_stored + 2, 30, "the new key")
        wait_until(
            lambda: bool(
                anchor.query("SELECT 1 FROM quarantine WHERE event_id = ?", (backdated.event_id,))
            ),
            30,
            "the backdated event's refusal",
        )
        reasons = anchor.query(
            "SELECT reason FROM quarantine WHERE event_id IN (?, ?)",
            (refused_id, backdated.event_id),
        )
        assert reasons == [("key_revoked",), ("key_revoked",)]
        stored = {r[0] for r in anchor.query("SELECT event_id FROM events")}
        assert {before.event_id, earlier.event_id, rotated.event_id} <= stored
        assert backdated.event_id not in stored and refused_id not in stored
        # The gateway did sign these (the signature verified), so it is told: "quarantined".
        publisher.wait(
            lambda: (
                (backdated.event_id, ReceiptStatus.QUARANTINED)
                in receipts_for(publisher, "gw-1", anchor.key.public_key)
            ),
            "the quarantined receipt",
        )
        # The revocation is in the log: a key leaf for it was appended.
        wait_until(lambda: anchor.status()["unsequenced"] == 0, 30, "sequencing")
        leaves = anchor.query("SELECT COUNT(*) FROM key_records")
        assert leaves == [(3,)]  # enrol old, revoke old, enrol new
        assert SignedEvent.from_wire(before.to_wire()).event_id == before.event_id
    finally:
        if publisher is not None:
            publisher.close()
        anchor.stop()
