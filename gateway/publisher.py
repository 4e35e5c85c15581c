"""The MQTT side of the gateway: paho-mqtt 2.x, QoS 1, a stable client id, a persistent session.

paho's network thread only *reports*: every callback puts a small named record on ``inbox``
and returns. The service's main loop, which owns the state database, takes them from there —
receipts are verified and acknowledged in the outbox on that one thread. Nothing here decides
that an event was delivered: a ``publish()`` return value or a broker PUBACK never releases an
event; only the anchor's receipt does.
"""

from __future__ import annotations

import enum
import logging
import queue
import ssl
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.config import MqttConfig
from gateway.errors import GatewayError
from pledgewatch.topics import health_topic, receipts_topic

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 86_400


class Signal(enum.Enum):
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECEIPT = "receipt"
    PUBLISH_REFUSED = "publish_refused"


@dataclass(frozen=True, slots=True)
class Inbound:
    signal: Signal
    payload: bytes = b""
    detail: str = ""


def client_id(warehouse: str, gateway: str) -> str:
    """Stable across restarts, so the broker resumes the persistent session."""
    return f"pledgewatch-gw-{warehouse}-{gateway}"


class Publisher:
    def __init__(self, config: MqttConfig, warehouse: str, gateway: str) -> None:
        self.config = config
        self.warehouse = warehouse
        self.gateway = gateway
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.connected = False
        self._client: mqtt.Client | None = None

    def start(self, offline_health: bytes) -> None:
        """Configure the client and start connecting in the background (never blocks)."""
        cfg = self.config
        v5 = cfg.protocol == 5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id(self.warehouse, self.gateway),
            clean_session=None if v5 else False,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        )
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.max_inflight_messages_set(cfg.max_inflight)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        client.will_set(self.health_topic, offline_health, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
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

    @property
    def health_topic(self) -> str:
        return health_topic(self.warehouse, self.gateway)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> bool:
        """Hand one message to paho (QoS 1). False if paho refused it (not connected)."""
        if self._client is None:
            raise GatewayError("publisher not started")
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def stop(self, final_health: bytes | None) -> None:
        client = self._client
        if client is None:
            return
        if final_health is not None and self.connected:
            info = client.publish(self.health_topic, final_health, qos=1, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                try:
                    info.wait_for_publish(timeout=2.0)
                except (RuntimeError, ValueError):
                    log.warning("final health message not confirmed by the broker")
        client.disconnect()
        client.loop_stop()
        self._client = None

    # paho network thread below: record and return, nothing else.

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.inbox.put(Inbound(Signal.DISCONNECTED, detail=f"connect refused: {reason_code}"))
            return
        self.connected = True
        client.subscribe(receipts_topic(self.warehouse, self.gateway), qos=1)
        self.inbox.put(Inbound(Signal.CONNECTED, detail=f"session_present={flags.session_present}"))

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected = False
        self.inbox.put(Inbound(Signal.DISCONNECTED, detail=str(reason_code)))

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        self.inbox.put(
            Inbound(Signal.RECEIPT, payload=bytes(message.payload), detail=message.topic)
        )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.inbox.put(Inbound(Signal.PUBLISH_REFUSED, detail=f"mid {mid}: {reason_code}"))
