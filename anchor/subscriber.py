"""The anchor's MQTT side: a shared subscription to every gateway's events, receipts out.

paho-mqtt 2.x, ``CallbackAPIVersion.VERSION2``, MQTT 5, stable client id per worker,
``clean_start=False`` with a session expiry (so the broker queues events while the worker is
down), QoS 1, and **manual acknowledgement**: a message is PUBACKed only after the batch that
stored it has committed. The subscription ``$share/{group}/pledgewatch/v1/+/+/events`` lets
several workers split the stream.

``[mqtt] protocol = 4`` is for brokers that speak only MQTT 3.1.1 (amqtt, the demo's
in-process broker): a persistent session (``clean_session=False``) and a plain subscription
to ``pledgewatch/v1/+/+/events`` — 3.1.1 has no shared subscriptions, so run one worker per
broker — still QoS 1 with manual acknowledgement after commit.
"""

from __future__ import annotations

import logging
import queue
import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from anchor.config import MqttSection
from anchor.ingest import Message
from pledgewatch.topics import EVENTS_FILTER

SESSION_EXPIRY_S = 7 * 86_400

log = logging.getLogger(__name__)


class Subscriber:
    def __init__(self, config: MqttSection, worker: str) -> None:
        self.config = config
        self.worker = worker
        self.inbox: queue.SimpleQueue[Message] = queue.SimpleQueue()
        self.connected = False
        self._client: mqtt.Client | None = None

    @property
    def client_id(self) -> str:
        return f"pledgewatch-anchor-{self.worker}"

    @property
    def events_filter(self) -> str:
        if self.config.protocol == 5:
            return f"$share/{self.config.share_group}/{EVENTS_FILTER}"
        return EVENTS_FILTER

    def start(self) -> None:
        cfg = self.config
        v5 = cfg.protocol == 5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            manual_ack=True,
        )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        props = None
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect_async(
            cfg.host,
            cfg.port,
            cfg.keepalive_s,
            clean_start=False if v5 else mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
        )
        self._client = client
        client.loop_start()

    def ack(self, messages: list[Message]) -> None:
        if self._client is None:
            return
        for message in messages:
            if message.qos > 0:
                self._client.ack(message.mid, message.qos)

    def publish(self, topic: str, payload: bytes) -> None:
        if self._client is not None:
            self._client.publish(topic, payload, qos=1)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            return
        self.connected = True
        client.subscribe(self.events_filter, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            log.error("broker refused the events subscription: %s", ", ".join(refused))
        else:
            log.info("subscribed to %s", self.events_filter)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected = False

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Message(msg.topic, bytes(msg.payload), msg.mid, msg.qos))
