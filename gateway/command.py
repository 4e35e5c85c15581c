"""``pledgewatch gateway keygen | run | status``: argument wiring and exit codes.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or key (nothing was started).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from pathlib import Path
from typing import TextIO

from devices.registry import build_sensor
from gateway import config as gateway_config
from gateway import keystore
from gateway.errors import ConfigError, GatewayError, KeyStoreError
from gateway.health import health_file
from gateway.metrics import open_writer
from gateway.service import BoundSensor, GatewayService
from gateway.store import open_readonly
from pledgewatch.errors import PledgewatchError
from pledgewatch.process import handle_signals

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="gateway_command", required=True)
    keygen = sub.add_parser("keygen", help="create the gateway's Ed25519 key (mode 0600)")
    keygen.add_argument("--key", type=Path, required=True, help="where to write the key")
    keygen.add_argument("--force", action="store_true", help="replace an existing key")
    run = sub.add_parser("run", help="run until SIGTERM/SIGINT; SIGHUP reloads sensors")
    run.add_argument("--config", type=Path, required=True)
    status = sub.add_parser("status", help="outbox depth, oldest unsent, last receipt, seqs")
    status.add_argument("--config", type=Path, required=True)
    status.add_argument("--json", action="store_true")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handlers = {"keygen": _keygen, "run": _run, "status": _status}
    try:
        return handlers[args.gateway_command](args, out)
    except (ConfigError, KeyStoreError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (GatewayError, PledgewatchError) as exc:
        print(f"error: {exc}", file=err)
        return 1


def _keygen(args: argparse.Namespace, out: TextIO) -> int:
    key = keystore.generate(args.key, overwrite=args.force)
    print(f"key file:   {args.key}", file=out)
    print(f"key id:     {key.key_id}", file=out)
    print(f"public key: {key.public_key.hex()}", file=out)
    print("Enrol this public key and key id with the bank's anchor.", file=out)
    return 0


def _build_sensors(config: gateway_config.GatewayConfig) -> list[BoundSensor]:
    problems: list[str] = []
    bound: list[BoundSensor] = []
    for sensor_config in config.sensors:
        try:
            bound.append(BoundSensor(sensor_config, build_sensor(sensor_config)))
        except PledgewatchError as exc:
            problems.append(f"sensor {sensor_config.device}: {exc}")
    if problems:
        for b in bound:
            b.sensor.close()
        raise ConfigError("sensors", problems)
    return bound


def _run(args: argparse.Namespace, out: TextIO) -> int:
    stop = threading.Event()
    reload_requested = threading.Event()
    handle_signals(stop, on_reload=reload_requested.set)  # before any thread (drivers) starts
    config = gateway_config.load(args.config)
    key = keystore.load(config.gateway.key_file)
    sensors = _build_sensors(config)
    service = GatewayService(config, key, sensors, reload_requested=reload_requested)
    service.reloader = lambda: gateway_config.load(args.config)
    service.sensor_builder = _build_sensors
    if config.metrics is not None:
        service.metrics = open_writer(config.metrics, config.gateway.warehouse, config.gateway.id)
        service.metrics.start()
    log.info(
        "gateway %s/%s starting (key %s)", config.gateway.warehouse, config.gateway.id, key.key_id
    )
    try:
        service.run(stop)
    finally:
        if service.metrics is not None:
            service.metrics.close()
    log.info("gateway stopped")
    return 0


def _status(args: argparse.Namespace, out: TextIO) -> int:
    config = gateway_config.load(args.config)
    conn = open_readonly(config.gateway.state_db)
    try:
        depth, oldest = conn.execute("SELECT COUNT(*), MIN(created_ms) FROM outbox").fetchone()
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        seqs = dict(conn.execute("SELECT device, seq FROM chain ORDER BY device").fetchall())
        counters = dict(conn.execute("SELECT name, value FROM counters ORDER BY name").fetchall())
    finally:
        conn.close()
    now = time.time_ns() // 1_000_000
    hfile = health_file(config.gateway.state_db)
    health = json.loads(hfile.read_text()) if hfile.exists() else None
    last_receipt = int(meta["last_receipt_ms"]) if "last_receipt_ms" in meta else None
    report = {
        "warehouse": config.gateway.warehouse,
        "gateway": config.gateway.id,
        "outbox_depth": depth,
        "outbox_capacity": config.outbox.max_events,
        "oldest_unsent_age_s": None if oldest is None else round((now - oldest) / 1000, 3),
        "last_receipt_age_s": None
        if last_receipt is None
        else round((now - last_receipt) / 1000, 3),
        "devices": seqs,
        "counters": counters,
        "health": health,
    }
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True), file=out)
        return 0
    for name in (
        "warehouse",
        "gateway",
        "outbox_depth",
        "outbox_capacity",
        "oldest_unsent_age_s",
        "last_receipt_age_s",
    ):
        print(f"{name:22} {report[name]}", file=out)
    if health is not None:
        print(f"{'health':22} {health['state']} {', '.join(health['alarms'])}", file=out)
    for device, seq in seqs.items():
        print(f"{'seq ' + device:22} {seq}", file=out)
    for name, value in counters.items():
        print(f"{name:22} {value}", file=out)
    return 0
