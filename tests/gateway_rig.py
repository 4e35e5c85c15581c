"""Runs the real gateway (``pledgewatch gateway run``) as a subprocess against a real broker,
with the receipt responder standing in for the anchor, and checks delivery from what the
responder holds — not from the gateway's own counters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devices.base import Reading
from gateway import keystore
from pledgewatch.events import ZERO_HASH, Kind
from pledgewatch.signing import SigningKey

from receipt_responder import Ledger, ReceiptResponder

WAREHOUSE = "wh-1"
GATEWAY = "gw-1"


def weight_lines(devices: list[str], per_device: int, start: int = 0) -> list[str]:
    """Readings whose grams count up per device, so order and completeness are checkable."""
    out = []
    for i in range(start, start + per_device):
        for device in devices:
            reading = Reading(
                device=device, kind=Kind.WEIGHT, ts_ms=1_700_000_000_000 + i, bay="A1", grams=i
            )
            out.append(json.dumps(reading.to_dict()))
    return out


@dataclass
class GatewayRig:
    workdir: Path
    broker_port: int
    anchor_key: SigningKey = field(default_factory=lambda: SigningKey(bytes([9]) * 32))
    mqtt_extra: dict[str, object] = field(default_factory=dict)
    outbox_max: int = 100_000
    source: str = "readings.jsonl"
    gateway: str = GATEWAY
    resend_after_s: int = 5
    extra_toml: str = ""
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key_path = self.workdir / "gateway.key"
        self.key = keystore.generate(self.key_path)
        self.config_path = self.workdir / "gateway.toml"
        self.source_path = self.workdir / self.source
        self.log_path = self.workdir / "gateway.log"

    def write_config(self, *, source: Path | None = None, extra: str = "") -> None:
        mqtt = {
            "host": "127.0.0.1",
            "port": self.broker_port,
            "keepalive_s": 5,
            "reconnect_min_s": 1,
            "reconnect_max_s": 2,
            "resend_after_s": self.resend_after_s,
            **self.mqtt_extra,
        }
        lines = [
            "[gateway]",
            f'id = "{self.gateway}"',
            f'warehouse = "{WAREHOUSE}"',
            'key_file = "gateway.key"',
            'state_db = "state/gateway.db"',
            "heartbeat_interval_s = 3600",
            "health_interval_s = 1",
            "",
            "[anchor]",
            f'public_key = "{self.anchor_key.public_key.hex()}"',
            "",
            "[mqtt]",
            *[f"{k} = {json.dumps(v)}" for k, v in mqtt.items()],
            "",
            "[outbox]",
            f"max_events = {self.outbox_max}",
            "batch_size = 200",
            "",
            "[[sensors]]",
            'device = "feed"',
            'driver = "jsonl"',
            f'options = {{ path = "{source or self.source_path}", any_device = true }}',
            extra,
            self.extra_toml,
        ]
        self.config_path.write_text("\n".join(lines) + "\n")

    def responder(self, port: int | None = None, **kwargs: object) -> ReceiptResponder:
        responder = ReceiptResponder(
            "127.0.0.1",
            port or self.broker_port,
            self.anchor_key,
            {self.gateway: self.key.public_key},
            **kwargs,
        )  # type: ignore[arg-type]
        responder.start()
        return responder

    def feed(self, lines: list[str]) -> None:
        with self.source_path.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")

    def start(self) -> None:
        self.write_config()
        self.source_path.touch()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pledgewatch.cli",
                "gateway",
                "run",
                "--config",
                str(self.config_path),
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            masks = "\n".join(
                line for line in status.splitlines() if line.startswith(("Sig", "State"))
            )
            self.proc.send_signal(signal.SIGUSR1)  # faulthandler: where is it stuck?
            time.sleep(1)
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"gateway did not stop on SIGTERM:\n{masks}\n{self.log()[-6000:]}"
            ) from None

    def status(self) -> dict[str, object]:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pledgewatch.cli",
                "gateway",
                "status",
                "--json",
                "--config",
                str(self.config_path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"gateway exited with {self.proc.returncode}:\n{self.log()[-3000:]}"
            )

    def wait_delivered(self, responder: ReceiptResponder, count: int, timeout: float = 60) -> int:
        """Wait until the responder stores ``count`` events; fail early if the gateway died."""
        deadline = time.monotonic() + timeout
        have = 0
        while time.monotonic() < deadline:
            have = responder.wait_for(count, timeout=0.5)
            if have >= count:
                return have
            self.check_alive()
        return have

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_status(self, predicate: object, timeout: float = 20) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        status: dict[str, object] = {}
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                status = self.status()
            except subprocess.CalledProcessError:
                status = {}
            if status and predicate(status):  # type: ignore[operator]
                return status
            time.sleep(0.2)
        raise AssertionError(f"status never matched; last: {status}\n{self.log()[-3000:]}")


def assert_chains(ledger: Ledger, gateway_key: bytes, expected: dict[str, int]) -> None:
    """Every device's chain is 1..n, gapless, prev-linked, no forks, n as expected."""
    assert ledger.forks == [], ledger.forks
    assert ledger.rejected == [], ledger.rejected[:5]
    for device, count in expected.items():
        chain = ledger.chains.get((GATEWAY, device), {})
        assert sorted(chain) == list(range(1, count + 1)), (device, len(chain), count)
        prev = ZERO_HASH
        for seq in range(1, count + 1):
            event = ledger.stored[chain[seq]].event
            assert event.prev == prev, (device, seq)
            prev = chain[seq]


def grams_in_seq_order(ledger: Ledger, device: str) -> list[int | None]:
    chain = ledger.chains[(GATEWAY, device)]
    return [ledger.stored[chain[s]].event.grams for s in sorted(chain)]
