"""``pledgewatch demo``: the pipeline as far as it is built, on embedded defaults.

No servers to install: an in-process MQTT broker (amqtt, MQTT 3.1.1, loopback only, on a free
port), one gateway service per gateway of a simulator scenario (each with its own key and
durable outbox), and a bank-side listener that verifies every signed event it receives and
checks each device's hash chain. The anchor — whose receipts release events from the
outboxes — is the next piece of work; until it exists the events stay in the outboxes,
which is exactly what a gateway must do without receipts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import logging
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from devices.base import SensorConfig
from devices.registry import build_sensor
from devices.sim.scenario import find_scenario, load_scenario
from gateway import keystore
from gateway.config import AnchorConfig, GatewayConfig, Identity, MqttConfig, OutboxConfig
from gateway.service import BoundSensor, GatewayService
from pledgewatch.errors import PledgewatchError
from pledgewatch.events import ZERO_HASH, SignedEvent
from pledgewatch.signing import SigningKey, verify_event
from pledgewatch.topics import EVENTS_FILTER, parse_topic


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """amqtt on 127.0.0.1 only, anonymous (loopback), no $SYS, in its own thread and loop."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._broker: Any = None

    def start(self) -> None:
        for name in ("amqtt", "transitions"):  # chatty at INFO; their errors still show
            logging.getLogger(name).setLevel(logging.ERROR)
        from amqtt.broker import Broker  # the demo extra; imported only when the demo runs

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._thread.start()
        self._broker = Broker(config, loop=self._loop)
        asyncio.run_coroutine_threadsafe(self._broker.start(), self._loop).result(timeout=10)

    def stop(self) -> None:
        # amqtt logs its own cancelled broadcast task as an ERROR on every clean shutdown.
        logging.getLogger("amqtt.broker").setLevel(logging.CRITICAL)
        if self._broker is not None:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@dataclass
class BankListener:
    """Verifies each event it sees against the enrolled gateway keys; tracks chains."""

    keys: dict[str, bytes]
    verified: dict[str, SignedEvent] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            gateway = parse_topic(msg.topic).gateway
            signed = SignedEvent.from_wire(bytes(msg.payload))
            verify_event(signed, self.keys[gateway])
        except (PledgewatchError, KeyError) as exc:
            with self.lock:
                self.rejected.append(f"{msg.topic}: {exc}")
            return
        with self.lock:
            if signed.event_id not in self.verified:
                self.verified[signed.event_id] = signed
                self.kinds[signed.event.kind.value] += 1

    def broken_chains(self) -> list[str]:
        with self.lock:
            events = list(self.verified.values())
        chains: dict[tuple[str, str], dict[int, SignedEvent]] = collections.defaultdict(dict)
        for s in events:
            chains[(s.event.gateway, s.event.device)][s.event.seq] = s
        broken = []
        for (gw, device), chain in sorted(chains.items()):
            prev = ZERO_HASH
            for seq in range(1, len(chain) + 1):
                if seq not in chain or chain[seq].event.prev != prev:
                    broken.append(f"{gw}/{device} at seq {seq}")
                    break
                prev = chain[seq].event_id
        return broken


def gateway_config(
    workdir: Path, gateway: str, warehouse: str, port: int, anchor: SigningKey
) -> GatewayConfig:
    return GatewayConfig(
        gateway=Identity(gateway, warehouse, workdir / "gateway.key", workdir / "gateway.db"),
        anchor=AnchorConfig(anchor.public_key),
        mqtt=MqttConfig(
            "127.0.0.1",
            port,
            None,
            None,
            False,
            None,
            None,
            None,
            protocol=4,
            keepalive_s=30,
            reconnect_min_s=1,
            reconnect_max_s=5,
            max_inflight=65_535,
            resend_after_s=3600,
        ),
        outbox=OutboxConfig(max_events=100_000, max_age_s=86_400, batch_size=500),
        heartbeat_interval_s=3600,
        health_interval_s=5,
        sensors=(),
    )


def run_demo(out: TextIO, workdir: Path, scenario_name: str) -> int:
    scenario_path = find_scenario(scenario_name)
    scenario = load_scenario(scenario_path)
    if workdir.exists():
        shutil.rmtree(workdir)
    port = free_port()
    broker = EmbeddedBroker(port)
    broker.start()
    print(f"broker      amqtt (in-process) on 127.0.0.1:{port}", file=out)
    anchor = SigningKey.generate()
    services: list[tuple[GatewayService, threading.Thread, threading.Event]] = []
    keys: dict[str, bytes] = {}
    listener = BankListener(keys)
    bank = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="pledgewatch-demo-bank",
        protocol=MQTTProtocolVersion.MQTTv311,
    )
    bank.on_message = listener.on_message
    bank.on_connect = lambda c, *_: c.subscribe(EVENTS_FILTER, qos=1)
    bank.connect("127.0.0.1", port)
    bank.loop_start()
    try:
        for gw in scenario.gateways:
            gdir = workdir / gw.id
            key = keystore.generate(gdir / "gateway.key")
            keys[gw.id] = key.public_key
            config = gateway_config(gdir, gw.id, scenario.warehouse, port, anchor)
            sensor_config = SensorConfig(
                f"sim-{gw.id}",
                "sim",
                None,
                {"scenario": str(scenario_path), "gateway": gw.id, "speed": 0},
            )
            service = GatewayService(
                config, key, [BoundSensor(sensor_config, build_sensor(sensor_config))]
            )
            stop = threading.Event()
            thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
            thread.start()
            services.append((service, thread, stop))
            print(f"gateway     {gw.id}: key {key.key_id}, outbox {gdir / 'gateway.db'}", file=out)
        _wait_until_quiet(listener, out)
    finally:
        for _, _, stop in services:
            stop.set()
        for _, thread, _ in services:
            thread.join(timeout=15)
        bank.disconnect()
        bank.loop_stop()
        broker.stop()
    return _summary(out, scenario.warehouse, listener, services)


def _wait_until_quiet(listener: BankListener, out: TextIO) -> None:
    last, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < 2.0:
        time.sleep(0.25)
        with listener.lock:
            count = len(listener.verified)
        if count != last:
            print(f"\r  verified at the bank side: {count} events", end="", file=out, flush=True)
            last, stable_since = count, time.monotonic()
    print(file=out)


def _summary(
    out: TextIO,
    warehouse: str,
    listener: BankListener,
    services: list[tuple[GatewayService, threading.Thread, threading.Event]],
) -> int:
    broken = listener.broken_chains()
    print(f"\nwarehouse {warehouse}", file=out)
    print(f"{'signed events verified by the bank listener':48} {len(listener.verified)}", file=out)
    for kind, count in sorted(listener.kinds.items()):
        print(f"  {kind:46} {count}", file=out)
    print(f"{'rejected messages':48} {len(listener.rejected)}", file=out)
    print(f"{'device chains broken':48} {len(broken)} {broken[:3]}", file=out)
    for service, _, _ in services:
        print(
            f"{'outbox ' + service.config.gateway.id + ' (awaiting anchor receipts)':48} "
            f"{service.outbox.depth}",
            file=out,
        )
    print(
        "\nThe anchor (verified ingest, Merkle log, receipts that empty the outboxes) is the "
        "next piece of work; this demo grows with it.",
        file=out,
    )
    return 0 if not broken and not listener.rejected else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        default="faults",
        help="a shipped scenario name or a TOML path (default: faults)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("demo-out"),
        help="working directory, replaced on each run (default: ./demo-out)",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        return run_demo(out, args.out, args.scenario)
    except PledgewatchError as exc:
        print(f"error: {exc}", file=err)
        return 2
