"""The config files the demo writes into its output folder, as an operator would write them.

Two anchor configs differ only in ``[reconcile] silent_after_s``. The live reconciler judges
silence at the wall clock, and a month replayed in seconds arrives "late": half-way through
the replay the newest heartbeat is two weeks old, so every device would look silent. During
the replay the threshold is therefore 30 days (``anchor-replay.toml``); once the month is in,
the demo restarts the anchor with the operator default of hours (``anchor.toml``) and the
silent sensor is judged against "now" like in production. Every other rule follows the
events themselves and fires during the replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.demo.world import UNIT_GRAMS, WAREHOUSE

ORIGIN = "demo.pledgewatch/log"
WITNESS_NAME = "demo.bank/witness"
REPLAY_SILENT_AFTER_S = 30 * 86_400  # the highest the anchor accepts
SILENT_AFTER_S = 6 * 3600  # devices beat every 3 h in the demo's scenario


@dataclass(frozen=True, slots=True)
class BankSide:
    folder: Path
    broker_port: int
    mqtt_protocol: int
    witness_port: int
    witness_public_key: str
    webhook_url: str
    webhook_secret: str

    def anchor_toml(self, silent_after_s: int) -> str:
        grams = ", ".join(f'"{sku}" = {g}' for sku, g in UNIT_GRAMS.items())
        return "\n".join(
            [
                "# Written by `pledgewatch demo`. Paths are relative to this file.",
                "[anchor]",
                f'origin = "{ORIGIN}"',
                'key_file = "anchor.key"',
                'store = "sqlite:anchor.db"',
                'worker = "worker-1"',
                "",
                "[mqtt]",
                'host = "127.0.0.1"',
                f"port = {self.broker_port}",
                f"protocol = {self.mqtt_protocol}  # 4 = MQTT 3.1.1 (amqtt), 5 = Mosquitto",
                "",
                "[log]",
                "checkpoint_interval_ms = 500",
                "",
                "[ledger]",
                'url = "sqlite:ledger.db"  # the embedded ledger: a hash chain in SQLite',
                "every = 1",
                "",
                "[witness]",
                f'url = "http://127.0.0.1:{self.witness_port}"',
                f'name = "{WITNESS_NAME}"',
                f'public_key = "{self.witness_public_key}"',
                "",
                "[reconcile]",
                "every_ms = 200",
                f"silent_after_s = {silent_after_s}",
                f"unit_grams = {{ {grams} }}",
                "",
                "[alerts]",
                "deliver_every_ms = 200",
                "retry_schedule_s = [1, 1, 2, 2, 5]",
                "jitter = false",
                "",
                "# The loan officer's receiver, run by the demo. It verifies the Standard",
                "# Webhooks v1 signature (HMAC-SHA256) with this secret.",
                "[[webhooks]]",
                'name = "loan-officer"',
                f'url = "{self.webhook_url}"',
                f'secret = "{self.webhook_secret}"',
                "",
            ]
        )

    def witness_toml(self, anchor_public_key: str) -> str:
        return "\n".join(
            [
                "# Written by `pledgewatch demo`: the bank's witness for the demo's log.",
                "[witness]",
                f'name = "{WITNESS_NAME}"',
                'key_file = "witness.key"',
                'state_db = "witness.db"',
                "",
                "[listen]",
                'host = "127.0.0.1"',
                f"port = {self.witness_port}",
                "",
                "[[logs]]",
                f'origin = "{ORIGIN}"',
                f'public_key = "{anchor_public_key}"',
                "",
            ]
        )


def gateway_toml(
    gateway: str,
    broker_port: int,
    protocol: int,
    anchor_public_key: str,
    scenario: Path,
    speed: int,
) -> str:
    """A gateway whose one sensor replays its part of the scenario, ``speed`` × real time."""
    return "\n".join(
        [
            "# Written by `pledgewatch demo`. Paths are relative to this file.",
            "[gateway]",
            f'id = "{gateway}"',
            f'warehouse = "{WAREHOUSE}"',
            'key_file = "gateway.key"',
            'state_db = "gateway.db"',
            "heartbeat_interval_s = 3600",
            "health_interval_s = 2",
            "",
            "[anchor]",
            f'public_key = "{anchor_public_key}"',
            "",
            "[mqtt]",
            'host = "127.0.0.1"',
            f"port = {broker_port}",
            f"protocol = {protocol}",
            "keepalive_s = 30",
            "reconnect_min_s = 1",
            "reconnect_max_s = 2",
            "resend_after_s = 10",
            "",
            "[outbox]",
            "max_events = 100000",
            "batch_size = 500",
            "",
            "[[sensors]]",
            f'device = "sim-{gateway}"',
            'driver = "sim"',
            f'options = {{ scenario = "{scenario}", gateway = "{gateway}", speed = {speed} }}',
            "",
        ]
    )
