"""Gateway configuration: one TOML file, loaded once into frozen dataclasses.

Every problem in the file is reported in one ``ConfigError`` (the CLI exits 2 and starts
nothing). See docs/OPERATIONS.md for an annotated example.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devices.base import SensorConfig
from gateway.errors import ConfigError
from gateway.metrics import MetricsConfig, parse_metrics
from pledgewatch.tomlconf import Fields, parse_file
from pledgewatch.topics import ID_PATTERN


@dataclass(frozen=True, slots=True)
class Identity:
    id: str
    warehouse: str
    key_file: Path
    state_db: Path


@dataclass(frozen=True, slots=True)
class AnchorConfig:
    public_key: bytes


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    ca_file: Path | None
    cert_file: Path | None
    key_file: Path | None
    protocol: int
    keepalive_s: int
    reconnect_min_s: int
    reconnect_max_s: int
    max_inflight: int
    resend_after_s: int


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    max_events: int
    max_age_s: int
    batch_size: int


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    gateway: Identity
    anchor: AnchorConfig
    mqtt: MqttConfig
    outbox: OutboxConfig
    heartbeat_interval_s: int
    health_interval_s: int
    sensors: tuple[SensorConfig, ...]
    metrics: MetricsConfig | None = None


def load(path: Path) -> GatewayConfig:
    config, problems = parse_file(path, parse)
    if config is None:
        raise ConfigError(str(path), problems)
    return config


def parse(raw: dict[str, object], base: Path, problems: list[str]) -> GatewayConfig:
    root = Fields(raw, "", problems)
    gw = root.table("gateway")
    identity = Identity(
        id=_id(gw, "id"),
        warehouse=_id(gw, "warehouse"),
        key_file=_path(base, gw.text("key_file")),
        state_db=_path(base, gw.text("state_db")),
    )
    heartbeat = gw.integer("heartbeat_interval_s", 60, low=1, high=86400)
    health = gw.integer("health_interval_s", 10, low=1, high=3600)
    gw.finish()
    config = GatewayConfig(
        gateway=identity,
        anchor=_anchor(root.table("anchor")),
        mqtt=_mqtt(root.table("mqtt"), base),
        outbox=_outbox(root.table("outbox", required=False)),
        heartbeat_interval_s=heartbeat,
        health_interval_s=health,
        sensors=_sensors(root.tables("sensors")),
        metrics=parse_metrics(root.table("metrics", required=False)),
    )
    root.finish()
    return config


def _id(f: Fields, key: str) -> str:
    value = f.text(key)
    if value and ID_PATTERN.fullmatch(value) is None:
        f.problems.append(f"{f.path}.{key}: got {value!r}, want [a-z0-9][a-z0-9._-]{{0,63}}")
    return value


def _path(base: Path, text: str) -> Path:
    return base / text if text else base


def _optional_path(base: Path, text: str | None) -> Path | None:
    return None if text is None else base / text


def _anchor(f: Fields) -> AnchorConfig:
    text = f.text("public_key")
    f.finish()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if text and len(key) != 32:
        f.problems.append(f"{f.path}.public_key: want 64 hex digits (the anchor's Ed25519 key)")
    return AnchorConfig(key)


def _mqtt(f: Fields, base: Path) -> MqttConfig:
    password = f.optional_text("password")
    password_file = _optional_path(base, f.optional_text("password_file"))
    if password is not None and password_file is not None:
        f.problems.append(f"{f.path}: set password or password_file, not both")
    if password_file is not None:
        try:
            password = password_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            f.problems.append(
                f"{f.path}.password_file: cannot read {password_file}: {exc.strerror}"
            )
    tls = f.boolean("tls", False)
    config = MqttConfig(
        host=f.text("host"),
        port=f.integer("port", 8883 if tls else 1883, low=1, high=65535),
        username=f.optional_text("username"),
        password=password,
        tls=tls,
        ca_file=_optional_path(base, f.optional_text("ca_file")),
        cert_file=_optional_path(base, f.optional_text("cert_file")),
        key_file=_optional_path(base, f.optional_text("key_file")),
        protocol=f.integer("protocol", 5, low=4, high=5),
        keepalive_s=f.integer("keepalive_s", 30, low=5, high=3600),
        reconnect_min_s=f.integer("reconnect_min_s", 1, low=1, high=60),
        reconnect_max_s=f.integer("reconnect_max_s", 60, low=1, high=3600),
        max_inflight=f.integer("max_inflight", 1000, low=1, high=65535),
        resend_after_s=f.integer("resend_after_s", 30, low=1, high=86400),
    )
    if config.reconnect_min_s > config.reconnect_max_s:
        f.problems.append(f"{f.path}: reconnect_min_s must not exceed reconnect_max_s")
    if (config.cert_file is None) != (config.key_file is None):
        f.problems.append(f"{f.path}: cert_file and key_file go together (mutual TLS)")
    if (config.ca_file or config.cert_file) and not config.tls:
        f.problems.append(f"{f.path}: ca_file/cert_file given but tls = false")
    f.finish()
    return config


def _outbox(f: Fields) -> OutboxConfig:
    config = OutboxConfig(
        max_events=f.integer("max_events", 100_000, low=1, high=100_000_000),
        max_age_s=f.integer("max_age_s", 86_400, low=1, high=365 * 86_400),
        batch_size=f.integer("batch_size", 500, low=1, high=10_000),
    )
    f.finish()
    return config


def _sensors(tables: list[Fields]) -> tuple[SensorConfig, ...]:
    out: list[SensorConfig] = []
    seen: set[str] = set()
    for f in tables:
        device = _id(f, "device")
        if device in seen:
            f.problems.append(f"{f.path}.device: {device!r} appears twice")
        seen.add(device)
        out.append(
            SensorConfig(device, f.text("driver"), f.optional_text("bay"), f.raw_scalars("options"))
        )
        f.finish()
    return tuple(out)
