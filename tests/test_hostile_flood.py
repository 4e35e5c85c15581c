"""A hostile MQTT client floods the real anchor while honest gateways publish (issue 6 §3).

Real Mosquitto, one real anchor worker (SQLite), two real gateways (``pledgewatch gateway run``)
with a few thousand readings each, and a hostile paho client that publishes 100,000 payloads
made by a seeded generator (the seed is printed; set ``PLEDGEWATCH_FLOOD_SEED`` to replay a run,
``PLEDGEWATCH_FLOOD`` to change the count). A capture client reads the honest events off the
broker as an eavesdropper would, and replays them (→ harmless duplicates) and mutates them
(→ refused). Checked afterwards from the anchor's raw tables: the stored events are exactly the
honest ones, each once, in gapless chains; every hostile payload the anchor received is in
quarantine, with the reason its category must produce; the anchor is still running and still
stores new honest events.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pledgewatch import canonical
from pledgewatch.errors import PledgewatchError
from pledgewatch.events import ZERO_HASH, Event, Kind, SignedEvent
from pledgewatch.signing import SigningKey, key_id, sign_event, verify_event
from pledgewatch.topics import events_topic, receipts_topic

from anchor_rig import AnchorRig, wait_until
from gateway_rig import WAREHOUSE, GatewayRig, weight_lines
from servers import MosquittoServer

pytestmark = pytest.mark.slow

HONEST = ("gw-1", "gw-2")
DEVICES = ["lc-a1", "lc-a2"]
PER_DEVICE = 1000
FLOOD = int(os.environ.get("PLEDGEWATCH_FLOOD", "100000"))

# category → the quarantine reason it must produce (None: the anchor must not quarantine it)
EXPECTED: dict[str, str | None] = {
    "random_bytes": "malformed",
    "truncated": "malformed",
    "oversized": "malformed",
    "wrong_types": "malformed",
    "huge_int": "malformed",
    "deep_nesting": "malformed",
    "invalid_utf8": "malformed",
    "non_canonical": "malformed",
    "bad_topic": "bad_topic",
    "wrong_gateway_topic": "topic_mismatch",
    "stranger_key": "unknown_key",
    "stranger_claims_owner_kid": "bad_signature",
    "enrolled_key_of_another_gateway": "key_gateway_mismatch",
    "receipts_topic_garbage": None,  # not an events topic: the anchor never sees it
    # made from captured honest traffic, during the flood
    "replayed": None,  # a duplicate: stored once, acknowledged, not quarantined (ingest.py §6)
    "replayed_on_other_topic": "topic_mismatch",
    "mutated_honest": "bad_signature",
}
WEIGHTS = {name: 1.0 for name in EXPECTED if not name.startswith(("replayed", "mutated"))}
WEIGHTS["oversized"] = 0.2  # up to 6 KB each: keep the quarantine table modest
WEIGHTS["receipts_topic_garbage"] = 0.1


@dataclass(frozen=True)
class Hostile:
    category: str
    topic: str
    payload: bytes


def count(status: dict[str, object], key: str) -> int:
    return cast(int, status[key])


def fingerprint(topic: str, payload: bytes) -> bytes:
    return hashlib.sha256(topic.encode() + b"\x00" + payload).digest()


class Generator:
    """Seeded hostile payloads; knows the honest gateways' public keys, not their seeds."""

    def __init__(self, seed: int, owners: dict[str, bytes], evil: SigningKey) -> None:
        self.rng = random.Random(seed)
        self.owners = owners
        self.evil = evil
        self.strangers = [SigningKey(self.rng.randbytes(32)) for _ in range(4)]
        self.owner_kids = {g: key_id(pk) for g, pk in owners.items()}
        self.now_ms = time.time_ns() // 1_000_000

    def stream(self, count: int) -> Iterator[Hostile]:
        names = list(WEIGHTS)
        weights = [WEIGHTS[n] for n in names]
        for category in self.rng.choices(names, weights, k=count):
            yield getattr(self, category)()

    # -- building blocks --

    def event(self, gateway: str | None = None) -> Event:
        rng = self.rng
        seq = rng.choice([1, 2, rng.randint(1, 10**6)])
        return Event(
            kind=Kind.WEIGHT,
            warehouse=WAREHOUSE,
            gateway=gateway or rng.choice(HONEST),
            device=rng.choice([*DEVICES, "lc-x9"]),
            seq=seq,
            prev=ZERO_HASH if seq == 1 else rng.randbytes(32).hex(),
            ts_ms=self.now_ms + rng.randint(-1000, 10**6),
            bay="A1",
            grams=rng.randint(-(10**6), 10**9),
        )

    def stranger_wire(self, gateway: str | None = None) -> tuple[Event, bytes]:
        e = self.event(gateway)
        return e, sign_event(e, self.rng.choice(self.strangers)).to_wire()

    def envelope(self) -> dict[str, object]:
        return canonical.decode(self.stranger_wire()[1])  # type: ignore[no-any-return]

    def topic_of(self, e: Event) -> str:
        return events_topic(e.warehouse, e.gateway)

    # -- categories --

    def random_bytes(self) -> Hostile:
        data = self.rng.randbytes(self.rng.randint(0, 600))
        return Hostile("random_bytes", events_topic(WAREHOUSE, self.rng.choice(HONEST)), data)

    def truncated(self) -> Hostile:
        e, wire = self.stranger_wire()
        return Hostile("truncated", self.topic_of(e), wire[: self.rng.randrange(len(wire))])

    def oversized(self) -> Hostile:
        e, wire = self.stranger_wire()
        pad = b" " * self.rng.randint(4097 - len(wire), 6000)
        data = self.rng.choice([wire + pad, wire[:-1] + b',"x":"' + pad + b'"}'])
        return Hostile("oversized", self.topic_of(e), data)

    def wrong_types(self) -> Hostile:
        value = self.envelope()
        where = self.rng.choice(
            [
                *("event", "kid", "sig", "v", "event.seq", "event.kind", "event.grams"),
                *("event.prev", "event.device", "event.v"),
            ]
        )
        # each wrong for every field chosen ("1" would be a valid device id, -1 valid grams)
        wrong: object = self.rng.choice([None, True, 1.5, [], {}, "ZZ", [1, 2]])
        if wrong == 1.5:  # no floats in canonical JSON: write one by hand below
            wrong = "__FLOAT__"
        if "." in where:
            value["event"][where.split(".")[1]] = wrong  # type: ignore[index]
        else:
            value[where] = wrong
        data = canonical.encode(value).replace(b'"__FLOAT__"', b"1.5")
        return Hostile("wrong_types", events_topic(WAREHOUSE, "gw-1"), data)

    def huge_int(self) -> Hostile:
        value = self.envelope()
        big = self.rng.choice([2**53, 2**64, -(2**63), 10**300])
        field = self.rng.choice(["seq", "ts_ms", "grams"])
        value["event"][field] = 0  # type: ignore[index]
        text = canonical.encode(value).replace(
            f'"{field}":0'.encode(), f'"{field}":{big}'.encode(), 1
        )
        return Hostile("huge_int", events_topic(WAREHOUSE, "gw-1"), text)

    def deep_nesting(self) -> Hostile:
        depth = self.rng.randint(canonical.MAX_DEPTH + 1, 1500)
        inner = self.rng.choice(
            [b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth]
        )
        inner = inner[:4000] if len(inner) > 4000 else inner
        e, wire = self.stranger_wire()
        data = wire.replace(b'"bay":"A1"', b'"bay":' + inner, 1)
        return Hostile("deep_nesting", self.topic_of(e), data)

    def invalid_utf8(self) -> Hostile:
        e, wire = self.stranger_wire()
        bad = self.rng.choice([b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"])
        data = wire.replace(b'"bay":"A1"', b'"bay":"A' + bad + b'"', 1)
        return Hostile("invalid_utf8", self.topic_of(e), data)

    def non_canonical(self) -> Hostile:
        e, wire = self.stranger_wire()
        value = json.loads(wire)
        data = self.rng.choice(
            [
                json.dumps(value, indent=1).encode(),
                json.dumps(value, separators=(", ", ":")).encode(),
                wire.replace(b'"kind":"WEIGHT"', b'"kind":"WEI\\u0047HT"'),
                wire + b"\n",
            ]
        )
        return Hostile("non_canonical", self.topic_of(e), data)

    def bad_topic(self) -> Hostile:
        _, wire = self.stranger_wire()
        warehouse, gateway = self.rng.choice(
            [("WH-1", "gw-1"), ("wh-1", "GW-1"), ("wh 1", "gw-1"), ("wh-1", "-gw"),
             ("wh-1", "g" * 65), ("wärehouse", "gw-1"), ("wh-1", ".."), ("_", "gw-2")]
        )  # fmt: skip
        return Hostile("bad_topic", f"pledgewatch/v1/{warehouse}/{gateway}/events", wire)

    def wrong_gateway_topic(self) -> Hostile:
        e, wire = self.stranger_wire()
        other = next(g for g in HONEST if g != e.gateway)
        return Hostile("wrong_gateway_topic", events_topic(WAREHOUSE, other), wire)

    def stranger_key(self) -> Hostile:
        e, wire = self.stranger_wire()
        return Hostile("stranger_key", self.topic_of(e), wire)

    def stranger_claims_owner_kid(self) -> Hostile:
        e = self.event()
        signed = sign_event(e, self.rng.choice(self.strangers))
        forged = SignedEvent(e, self.owner_kids[e.gateway], signed.signature)
        return Hostile("stranger_claims_owner_kid", self.topic_of(e), forged.to_wire())

    def enrolled_key_of_another_gateway(self) -> Hostile:
        e = self.event()
        return Hostile(
            "enrolled_key_of_another_gateway", self.topic_of(e), sign_event(e, self.evil).to_wire()
        )

    def receipts_topic_garbage(self) -> Hostile:
        gateway = self.rng.choice(HONEST)
        data = self.rng.choice(
            [self.rng.randbytes(self.rng.randint(0, 300)), b'{"receipt":{},"sig":"00"}', b""]
        )
        return Hostile("receipts_topic_garbage", receipts_topic(WAREHOUSE, gateway), data)


class Client:
    """A paho MQTT 5 client that counts PUBACKs; QoS 1 so the broker holds every message.

    At most ``WINDOW`` messages are unacknowledged at once: a publisher that runs far ahead
    of its PUBACKs only grows queues (paho's and the broker's), it does not flood any harder.
    """

    WINDOW = 2000

    def __init__(self, port: int, client_id: str) -> None:
        self.acked = 0
        self.published = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.max_inflight_messages_set(200)
        self.client.on_publish = self._on_publish
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_publish(
        self, client: object, userdata: object, mid: int, rc: object, p: object
    ) -> None:
        with self._lock:
            self.acked += 1

    def publish(self, topic: str, payload: bytes) -> None:
        deadline = time.monotonic() + 120
        while self.published - self.acked >= self.WINDOW:
            if time.monotonic() > deadline:
                raise AssertionError(f"no PUBACKs: {self.published} sent, {self.acked} acked")
            time.sleep(0.002)
        self.published += 1
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise AssertionError(f"publish to {topic!r} failed: {mqtt.error_string(info.rc)}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Capture:
    """An eavesdropper on every events topic: keeps the honest messages, to replay them."""

    def __init__(self, port: int, owners: dict[str, bytes]) -> None:
        self.owners = owners
        self.seen: set[bytes] = set()
        self.honest: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id="test-flood-capture",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("pledgewatch/v1/+/+/events", qos=0)
        self.client.loop_start()

    def _on_message(self, client: object, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.payload in self.seen:  # our own replays come back: replay each wire once
            return
        try:
            signed = SignedEvent.from_wire(bytes(msg.payload))
            owner = self.owners.get(signed.event.gateway)
            if owner is None or msg.topic != events_topic(WAREHOUSE, signed.event.gateway):
                return
            verify_event(signed, owner)
        except PledgewatchError:
            return
        self.seen.add(bytes(msg.payload))
        self.honest.put((msg.topic, bytes(msg.payload)))

    def drain(self) -> list[tuple[str, bytes]]:
        out = []
        while True:
            try:
                out.append(self.honest.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def from_captured(rng: random.Random, topic: str, wire: bytes) -> list[Hostile]:
    """A replay, and sometimes the same wire on the other gateway's topic, or edited."""
    out = [Hostile("replayed", topic, wire)]
    roll = rng.random()
    if roll < 0.3:
        gateway = SignedEvent.from_wire(wire).event.gateway
        other = next(g for g in HONEST if g != gateway)
        out.append(Hostile("replayed_on_other_topic", events_topic(WAREHOUSE, other), wire))
    elif roll < 0.6 and SignedEvent.from_wire(wire).event.kind is Kind.WEIGHT:
        signed = SignedEvent.from_wire(wire)
        edited = replace(signed.event, grams=(signed.event.grams or 0) + rng.randint(1, 10**6))
        forged = SignedEvent(edited, signed.key_id, signed.signature)
        out.append(Hostile("mutated_honest", topic, forged.to_wire()))
    return out


def test_a_flood_of_hostile_payloads_is_quarantined_and_honest_gateways_lose_nothing(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoServer]
) -> None:
    seed = int(os.environ.get("PLEDGEWATCH_FLOOD_SEED", random.randrange(2**32)))
    print(f"hostile flood: seed {seed}, {FLOOD} payloads (PLEDGEWATCH_FLOOD_SEED={seed})")
    broker = mosquitto_factory(max_inflight_messages=500)
    anchor = AnchorRig(tmp_path / "anchor", broker.port, witness=False)
    gateways = [
        GatewayRig(tmp_path / g, broker.port, anchor_key=anchor.key, gateway=g, resend_after_s=30)
        for g in HONEST
    ]
    owners = {g.gateway: g.key.public_key for g in gateways}
    for g in gateways:
        anchor.enrol(WAREHOUSE, g.gateway, g.key.public_key)
    evil = SigningKey(random.Random(seed + 1).randbytes(32))
    anchor.enrol(WAREHOUSE, "gw-evil", evil.public_key)

    # Made while publishing (not up front): generating costs about as much CPU as the anchor
    # spends refusing, and overlapping the two keeps the test short.
    flood = Generator(seed, owners, evil).stream(FLOOD)
    sent: dict[bytes, list[str]] = {}
    per_category: Counter[str] = Counter()
    forged_receipt_topics: set[str] = set()

    def note(h: Hostile) -> None:
        sent.setdefault(fingerprint(h.topic, h.payload), []).append(h.category)
        per_category[h.category] += 1
        if h.category == "receipts_topic_garbage":
            forged_receipt_topics.add(h.topic)

    capture: Capture | None = None
    hostile: Client | None = None
    rng = random.Random(seed + 2)
    try:
        anchor.start()
        anchor.wait_subscribed()
        capture = Capture(broker.port, owners)
        assert capture.subscribed.wait(20)
        for g in gateways:
            g.feed(weight_lines(DEVICES, PER_DEVICE))
            g.start()
        hostile = Client(broker.port, "test-flood-hostile")
        started = time.monotonic()
        for i, h in enumerate(flood):
            note(h)
            hostile.publish(h.topic, h.payload)
            if i % 2000 == 0:
                for topic, wire in capture.drain():
                    for extra in from_captured(rng, topic, wire):
                        note(extra)
                        hostile.publish(extra.topic, extra.payload)
        wait_until(lambda: hostile.acked >= hostile.published, 300, "the broker's PUBACKs")
        publish_s = time.monotonic() - started
        honest_total = len(HONEST) * (len(DEVICES) * PER_DEVICE + 1)  # + a start heartbeat each
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            for topic, wire in capture.drain():
                for extra in from_captured(rng, topic, wire):
                    note(extra)
                    hostile.publish(extra.topic, extra.payload)
            anchor.anchor_proc.check_alive()
            status = anchor.status()
            want_q = sum(n for c, n in per_category.items() if EXPECTED[c] is not None)
            if count(status, "events") >= honest_total and count(status, "quarantined") >= want_q:
                break
            time.sleep(1)
        total_s = time.monotonic() - started
        for g in gateways:
            g.wait_status(lambda s: s["outbox_depth"] == 0, timeout=120)
        time.sleep(1.0)  # let any late replay reach the anchor before the tables are read
        for topic, wire in capture.drain():  # late captures: replay them too
            for extra in from_captured(rng, topic, wire):
                note(extra)
                hostile.publish(extra.topic, extra.payload)
        # One last hostile message: once it is quarantined, everything sent before it was
        # processed (one publisher, one subscriber, QoS 1: the broker keeps the order).
        sentinel = Hostile("random_bytes", events_topic(WAREHOUSE, "gw-1"), b"end %d" % seed)
        note(sentinel)
        hostile.publish(sentinel.topic, sentinel.payload)
        wait_until(
            lambda: (
                anchor.query("SELECT COUNT(*) FROM quarantine WHERE raw = ?", (sentinel.payload,))
                == [(1,)]
            ),
            120,
            "the last hostile message",
        )

        # The anchor is alive and still stores honest events after the flood.
        anchor.anchor_proc.check_alive()
        gateways[0].feed(weight_lines(DEVICES, 1, start=PER_DEVICE))
        wait_until(
            lambda: count(anchor.status(), "events") >= honest_total + len(DEVICES),
            60,
            "a new event",
        )
        honest_total += len(DEVICES)
        time.sleep(1.0)

        check_stored_events(anchor, owners, honest_total)
        by_reason = check_quarantine(anchor, sent, per_category)
        for g in gateways:
            # forged receipts were noticed and ignored; no hostile message made the anchor
            # answer an honest gateway with "quarantined" (only its own key could do that)
            if receipts_topic(WAREHOUSE, g.gateway) in forged_receipt_topics:
                assert "ignored a message on the receipt topic" in g.log()
            assert "anchor quarantined event" not in g.log()
        print(
            f"hostile flood: {FLOOD} generated and published in {publish_s:.1f}s"
            f" ({FLOOD / publish_s:.0f}/s), all processed after {total_s:.1f}s"
            f" ({sum(by_reason.values()) / total_s:.0f} quarantined/s);"
            f" categories {dict(per_category)}; reasons {dict(by_reason)}"
        )
    finally:
        if hostile is not None:
            hostile.close()
        if capture is not None:
            capture.close()
        for g in gateways:
            g.stop()
        anchor.stop()


def check_stored_events(anchor: AnchorRig, owners: dict[str, bytes], total: int) -> None:
    rows = anchor.query("SELECT event_id, gateway, device, seq, prev, wire FROM events")
    assert len(rows) == total, (len(rows), total)
    chains: dict[tuple[str, str], list[tuple[int, str, str]]] = {}
    for event_id, gateway, device, seq, prev, wire in rows:
        signed = SignedEvent.from_wire(bytes(cast(bytes, wire)))
        assert gateway in owners, gateway
        verify_event(signed, owners[str(gateway)])
        assert signed.event_id == event_id
        chains.setdefault((str(gateway), str(device)), []).append(
            (cast(int, seq), str(event_id), str(prev))
        )
    for key, chain in chains.items():
        chain.sort()
        assert [s for s, _, _ in chain] == list(range(1, len(chain) + 1)), key
        assert chain[0][2] == ZERO_HASH
        for before, after in itertools.pairwise(chain):
            assert after[2] == before[1], key
    assert anchor.query("SELECT COUNT(*) FROM chain_records") == [(0,)]


def check_quarantine(
    anchor: AnchorRig, sent: dict[bytes, list[str]], per_category: Counter[str]
) -> Counter[str]:
    """Every quarantine row is one hostile message, with its category's reason and a detail."""
    seen: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    pending = {k: list(v) for k, v in sent.items()}
    for topic, raw, reason, detail in anchor.query(
        "SELECT topic, raw, reason, detail FROM quarantine"
    ):
        payload = bytes(cast(bytes, raw))
        categories = pending.get(fingerprint(str(topic), payload))
        assert categories, f"quarantined something nobody sent: {topic!r} {payload[:80]!r}"
        category = next((c for c in categories if EXPECTED[c] == reason), categories[0])
        categories.remove(category)
        assert reason == EXPECTED[category], (category, reason, detail)
        assert detail, category
        seen[category] += 1
        by_reason[str(reason)] += 1
    want = Counter({c: n for c, n in per_category.items() if EXPECTED[c] is not None})
    assert seen == want
    for category, reason in EXPECTED.items():  # every category was exercised
        assert per_category[category] > 0, category
        if reason is not None:
            assert by_reason[reason] > 0, reason
    return by_reason
