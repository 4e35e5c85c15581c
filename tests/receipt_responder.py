"""A small stand-in for the anchor's receipt path, used by gateway tests and the gateway bench.

It subscribes to every gateway's event topic with a persistent session (QoS 1), verifies each
event's signature against the enrolled gateway key, "stores" it in memory by event id
(idempotently), records every delivery, and answers with signed receipts in batches — exactly
the receipt protocol of docs/PROTOCOL.md. The real anchor (anchor/) replaces it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from pledgewatch.errors import PledgewatchError
from pledgewatch.events import SignedEvent
from pledgewatch.receipts import Receipt, ReceiptItem, ReceiptStatus, sign_receipt
from pledgewatch.signing import SigningKey, verify_event
from pledgewatch.topics import EVENTS_FILTER, parse_topic, receipts_topic


@dataclass
class Ledger:
    """What the responder saw. Guarded by the responder's lock."""

    stored: dict[str, SignedEvent] = field(default_factory=dict)
    deliveries: int = 0
    chains: dict[tuple[str, str], dict[int, str]] = field(default_factory=lambda: defaultdict(dict))
    forks: list[tuple[str, int, str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


class ReceiptResponder:
    def __init__(
        self,
        host: str,
        port: int,
        anchor_key: SigningKey,
        gateway_keys: dict[str, bytes],
        *,
        client_id: str = "test-anchor",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.anchor_key = anchor_key
        self.gateway_keys = gateway_keys
        self.ledger = Ledger()
        self.paused = threading.Event()
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], list[ReceiptItem]] = defaultdict(list)
        self._stop = threading.Event()
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(1, 2)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._host, self._port = host, port
        self._flusher = threading.Thread(target=self._flush_loop, daemon=True)

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self._client.connect_async(self._host, self._port, 10, clean_start=False, properties=props)
        self._client.loop_start()
        self._flusher.start()

    def stop(self) -> None:
        self._stop.set()
        self._flusher.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()

    def snapshot(self) -> Ledger:
        with self._lock:
            return Ledger(
                dict(self.ledger.stored),
                self.ledger.deliveries,
                {k: dict(v) for k, v in self.ledger.chains.items()},
                list(self.ledger.forks),
                list(self.ledger.rejected),
            )

    def wait_for(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                have = len(self.ledger.stored)
            if have >= count:
                return have
            time.sleep(0.05)
        with self._lock:
            return len(self.ledger.stored)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        reason_code: mqtt.ReasonCode,
        properties: object,
    ) -> None:
        if not reason_code.is_failure:
            client.subscribe(EVENTS_FILTER, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        item, where = self._check(msg.topic, bytes(msg.payload))
        if where is not None and item is not None:
            with self._lock:
                self._pending[where].append(item)

    def _check(
        self, topic: str, payload: bytes
    ) -> tuple[ReceiptItem | None, tuple[str, str] | None]:
        try:
            address = parse_topic(topic)
            signed = SignedEvent.from_wire(payload)
            key = self.gateway_keys[address.gateway]
            verify_event(signed, key)
        except (PledgewatchError, KeyError) as exc:
            with self._lock:
                self.ledger.rejected.append(f"{topic}: {exc}")
            return None, None
        event_id = signed.event_id
        where = (address.warehouse, address.gateway)
        with self._lock:
            self.ledger.deliveries += 1
            status = (
                ReceiptStatus.DUPLICATE if event_id in self.ledger.stored else ReceiptStatus.STORED
            )
            if status is ReceiptStatus.STORED:
                self.ledger.stored[event_id] = signed
                chain = self.ledger.chains[(address.gateway, signed.event.device)]
                other = chain.get(signed.event.seq)
                if other is not None and other != event_id:
                    self.ledger.forks.append(
                        (signed.event.device, signed.event.seq, other, event_id)
                    )
                chain[signed.event.seq] = event_id
        return ReceiptItem(event_id, status), where

    def _flush_loop(self) -> None:
        while not self._stop.wait(0.02):
            if self.paused.is_set():
                continue
            with self._lock:
                pending, self._pending = self._pending, defaultdict(list)
            for (warehouse, gateway), items in pending.items():
                for start in range(0, len(items), 500):
                    receipt = Receipt(
                        self.anchor_key.key_id,
                        warehouse,
                        gateway,
                        time.time_ns() // 1_000_000,
                        tuple(items[start : start + 500]),
                    )
                    self._client.publish(
                        receipts_topic(warehouse, gateway),
                        sign_receipt(receipt, self.anchor_key),
                        qos=1,
                    )
