"""The demo's MQTT broker: Mosquitto when it is on PATH, else amqtt in this process.

Both listen on 127.0.0.1 only, on a free port, anonymous (loopback), and are stopped by the
demo whatever happens. amqtt speaks MQTT 3.1.1 only, so with it every client of the demo
(gateways and the anchor, ``[mqtt] protocol = 4``) uses 3.1.1; with Mosquitto they use MQTT 5.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from gateway.demo.children import Children, port_open
from gateway.demo.errors import DemoError

BROKERS = ("auto", "amqtt", "mosquitto")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Broker(Protocol):
    name: str
    port: int
    protocol: int  # MQTT protocol level the demo's clients use: 4 (3.1.1) or 5

    def start(self) -> None: ...

    def stop(self) -> None: ...


class EmbeddedBroker:
    """amqtt on 127.0.0.1 only, anonymous (loopback), no $SYS, in its own thread and loop."""

    name = "amqtt (in-process, MQTT 3.1.1)"
    protocol = 4

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._broker: Any = None

    def start(self) -> None:
        for name in ("amqtt", "transitions"):  # chatty at INFO; their errors still show
            logging.getLogger(name).setLevel(logging.ERROR)
        from amqtt.broker import Broker  # the demo extra; imported only when it runs

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
        # ... and waits for that task, idle on an empty queue, for its full shutdown timeout
        # (5 s in amqtt 0.12) before cancelling it. The demo stops the broker after every
        # client has gone, so there is nothing left to broadcast: wait briefly instead.
        from amqtt import broker as amqtt_broker

        if hasattr(amqtt_broker, "_BROADCAST_SHUTDOWN_TIMEOUT"):
            amqtt_broker._BROADCAST_SHUTDOWN_TIMEOUT = 0.2
        if self._broker is not None:
            asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop).result(10)
            self._broker = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)


class MosquittoBroker:
    """A private Mosquitto (MQTT 5) child process with a config written into ``workdir``.

    No persistence (the demo's broker lives for one run) and a queue limit high enough that
    Mosquitto never drops QoS 1 messages for a slow subscriber (its default 1000 does).
    """

    name = "mosquitto (child process, MQTT 5)"
    protocol = 5

    def __init__(self, port: int, workdir: Path, children: Children, binary: str) -> None:
        self.port = port
        self.workdir = workdir
        self.children = children
        self.binary = binary

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    f"listener {self.port} 127.0.0.1",
                    "allow_anonymous true",
                    "persistence false",
                    "max_queued_messages 1000000",
                    "max_queued_bytes 0",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "",
                ]
            )
        )
        child = self.children.spawn(
            "mosquitto", [self.binary, "-c", str(config)], self.workdir / "mosquitto.log"
        )
        deadline = time.monotonic() + 10
        while not port_open(self.port):
            if child.poll() is not None or time.monotonic() > deadline:
                raise DemoError(
                    f"mosquitto did not start on 127.0.0.1:{self.port}; "
                    f"see {self.workdir / 'mosquitto.log'}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self.children.stop("mosquitto")


def choose(kind: str, workdir: Path, children: Children) -> Broker:
    """``auto``: Mosquitto when it is on PATH, else amqtt."""
    if kind not in BROKERS:
        raise DemoError(f"--broker: got {kind!r}, want one of {', '.join(BROKERS)}")
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if kind == "mosquitto" and binary is None:
        raise DemoError("--broker mosquitto: no mosquitto binary on PATH or in /usr/sbin")
    if kind == "mosquitto" or (kind == "auto" and binary is not None):
        assert binary is not None
        return MosquittoBroker(free_port(), workdir, children, binary)
    return EmbeddedBroker(free_port())
