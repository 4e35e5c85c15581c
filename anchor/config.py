"""Anchor configuration: one TOML file, loaded once into frozen dataclasses.

Every problem is reported in one ``ConfigError`` (the CLI exits 2 and starts nothing).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anchor.errors import AnchorError, ConfigError
from anchor.metrics import MetricsConfig, parse_metrics
from anchor.reconcile.settings import RuleSettings
from anchor.reconcile.snapshot import StateConfig, WeightTolerance
from pledgewatch.tomlconf import Fields, parse_file
from pledgewatch.topics import ID_PATTERN


@dataclass(frozen=True, slots=True)
class AnchorSection:
    origin: str
    key_file: Path
    store: str
    worker: str


@dataclass(frozen=True, slots=True)
class MqttSection:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool
    ca_file: Path | None
    share_group: str
    keepalive_s: int
    protocol: int = 5  # 5: $share subscription; 4 (MQTT 3.1.1, e.g. amqtt): plain, one worker


@dataclass(frozen=True, slots=True)
class LogSection:
    checkpoint_interval_ms: int
    checkpoint_max_entries: int
    gap_timeout_s: int


@dataclass(frozen=True, slots=True)
class LedgerSection:
    url: str
    every: int


@dataclass(frozen=True, slots=True)
class WitnessSection:
    url: str
    name: str
    public_key: bytes
    timeout_s: int


@dataclass(frozen=True, slots=True)
class BankSection:
    release_public_key: bytes | None  # verifies release tokens on UNLOADs of pledged goods


@dataclass(frozen=True, slots=True)
class ReconcileSection:
    enabled: bool  # run the live reconciler on this worker (one worker per store)
    state: StateConfig
    settings: RuleSettings
    every_ms: int


@dataclass(frozen=True, slots=True)
class AnchorConfig:
    anchor: AnchorSection
    mqtt: MqttSection
    log: LogSection
    ledger: LedgerSection
    witness: WitnessSection | None
    bank: BankSection
    reconcile: ReconcileSection
    metrics: MetricsConfig | None = None


def load(path: Path) -> AnchorConfig:
    config, problems = parse_file(path, parse)
    if config is None:
        raise ConfigError(str(path), problems)
    return config


def parse(raw: dict[str, object], base: Path, problems: list[str]) -> AnchorConfig:
    root = Fields(raw, "", problems)
    config = AnchorConfig(
        anchor=_anchor(root.table("anchor"), base),
        mqtt=_mqtt(root.table("mqtt"), base),
        log=_log(root.table("log", required=False)),
        ledger=_ledger(root.table("ledger", required=False), base),
        witness=_witness(root.table("witness", required=False)) if "witness" in raw else None,
        bank=_bank(root.table("bank", required=False)),
        reconcile=_reconcile(root.table("reconcile", required=False)),
        metrics=parse_metrics(root.table("metrics", required=False)),
    )
    root.skip("alerts", "webhooks")  # read by anchor.alerts.config from the same file
    root.skip("api")  # read by anchor.api.config from the same file
    root.finish()
    return config


def _anchor(f: Fields, base: Path) -> AnchorSection:
    origin = f.text("origin")
    if origin and (" " in origin or "\n" in origin or "+" in origin):
        problems = f.problems
        problems.append(f"{f.path}.origin: got {origin!r}, want a name without spaces or '+'")
    store = f.text("store", "sqlite:anchor.db")
    worker = f.text("worker", "worker-1")
    if worker and ID_PATTERN.fullmatch(worker) is None:
        f.problems.append(f"{f.path}.worker: got {worker!r}, want [a-z0-9][a-z0-9._-]*")
    if store and not store.startswith(("sqlite:", "postgresql://", "postgres://")):
        f.problems.append(f"{f.path}.store: got {store!r}, want sqlite:PATH or postgresql://…")
    section = AnchorSection(origin, base / f.text("key_file"), _relative_store(store, base), worker)
    f.finish()
    return section


def _relative_store(url: str, base: Path) -> str:
    """``sqlite:relative.db`` is relative to the config file's folder."""
    if url.startswith("sqlite:") and not url.startswith("sqlite:///"):
        return f"sqlite:///{(base / url.removeprefix('sqlite:')).resolve()}"
    return url


def _mqtt(f: Fields, base: Path) -> MqttSection:
    ca = f.optional_text("ca_file")
    tls = f.boolean("tls", False)
    section = MqttSection(
        host=f.text("host"),
        port=f.integer("port", 8883 if tls else 1883, low=1, high=65535),
        username=f.optional_text("username"),
        password=f.optional_text("password"),
        tls=tls,
        ca_file=None if ca is None else base / ca,
        share_group=f.text("share_group", "pledgewatch-anchor"),
        keepalive_s=f.integer("keepalive_s", 30, low=5, high=3600),
        protocol=f.integer("protocol", 5, low=4, high=5),
    )
    f.finish()
    return section


def _log(f: Fields) -> LogSection:
    section = LogSection(
        checkpoint_interval_ms=f.integer("checkpoint_interval_ms", 1000, low=10, high=86_400_000),
        checkpoint_max_entries=f.integer("checkpoint_max_entries", 10_000, low=1, high=10**7),
        gap_timeout_s=f.integer("gap_timeout_s", 300, low=1, high=30 * 86_400),
    )
    f.finish()
    return section


def _ledger(f: Fields, base: Path) -> LedgerSection:
    url = f.text("url", "sqlite:ledger.db")
    if not url.startswith(("sqlite:", "ethereum+http://", "ethereum+https://")):
        f.problems.append(f"{f.path}.url: got {url!r}, want sqlite:PATH or ethereum+http(s)://…")
    section = LedgerSection(_relative_store(url, base), f.integer("every", 1, low=1, high=10**6))
    f.finish()
    return section


def _witness(f: Fields) -> WitnessSection:
    key = f.public_key("public_key") or b""
    section = WitnessSection(
        f.text("url"), f.text("name"), key, f.integer("timeout_s", 5, low=1, high=300)
    )
    f.finish()
    return section


def _bank(f: Fields) -> BankSection:
    key = f.public_key("release_public_key", required=False)
    f.finish()
    return BankSection(key)


def _reconcile(f: Fields) -> ReconcileSection:
    """``[reconcile]``: unit weights and thresholds (seconds in config, ms inside)."""
    grams = f.raw_scalars("unit_grams")
    unit_grams: dict[str, int] = {}
    for sku, value in grams.items():
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            f.problems.append(f"{f.path}.unit_grams.{sku}: got {value!r}, want grams > 0")
        else:
            unit_grams[sku] = value
    enabled = f.boolean("enabled", True)
    every_ms = f.integer("every_ms", 200, low=10, high=60_000)
    tolerance = WeightTolerance(
        grams=f.integer("weight_tolerance_grams", 5000),
        basis_points=f.integer("weight_tolerance_bp", 50, high=10_000),
    )
    mismatch_s = f.integer("weight_mismatch_for_s", 7200, high=30 * 86_400)
    silent_s = f.integer("silent_after_s", 7200, high=30 * 86_400)
    f.finish()
    try:
        settings = RuleSettings(
            weight_mismatch_for_ms=mismatch_s * 1000,
            silent_after_ms=silent_s * 1000,
            silent_major_after_ms=max(silent_s * 1000, 86_400_000),
        )
    except AnchorError as exc:
        f.problems.append(f"{f.path}: {exc}")
        settings = RuleSettings()
    return ReconcileSection(
        enabled, StateConfig(unit_grams=unit_grams, tolerance=tolerance), settings, every_ms
    )
