"""Alerting configuration: ``[alerts]`` and ``[[webhooks]]`` of the anchor's TOML file.

    [alerts]
    signing_key_file = "alerts.key"   # Ed25519 (anchor.keyfile format): v1a signatures
    proof_url = "https://anchor.bank.example/proofs/{event_id}"   # else a CLI hint
    retry_schedule_s = [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400]
    jitter = true                       # full jitter: each delay uniform in [0, step]
    max_retry_after_s = 86400           # a receiver's Retry-After is capped at this
    deliver_every_ms = 1000             # how often the service runs the deliverer

    [[webhooks]]
    name = "credit-desk"
    url = "https://bank.example/hooks/pledgewatch"
    secret = "whsec_…"                  # v1 (HMAC); optional when signing_key_file is set
    min_severity = "major"              # warning | major | critical (default warning)
    rules = ["SHORTFALL", "DOUBLE_PLEDGE"]        # default: every rule
    categories = ["business"]           # business | tamper | infrastructure (default all)
    loans = ["L-7"]                     # default: every loan (and alerts without a loan)
    warehouses = ["wh-1"]               # default: every warehouse
    timeout_s = 15

Until ``anchor.config`` parses these tables itself, ``load`` reads the same file: it hands
every other table to ``anchor.config.parse`` and parses these two here, so one error still
lists every problem of the file.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from anchor import config as anchor_config
from anchor.alerts.errors import AlertError
from anchor.alerts.model import Alert
from anchor.alerts.webhooks import parse_secret
from anchor.errors import ConfigError
from anchor.reconcile.conditions import Category, Rule, Severity
from pledgewatch.errors import ValidationError
from pledgewatch.tomlconf import Fields, load_toml
from pledgewatch.topics import ID_PATTERN

DEFAULT_SCHEDULE_S = (5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400)
SEVERITIES = tuple(s.name.lower() for s in Severity)
MAX_DELAY_S = 7 * 86_400

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AlertsSection:
    signing_key_file: Path | None = None
    proof_url: str | None = None
    retry_schedule_s: tuple[int, ...] = DEFAULT_SCHEDULE_S
    jitter: bool = True
    max_retry_after_s: int = 86_400
    deliver_every_ms: int = 1000


@dataclass(frozen=True, slots=True)
class WebhookEndpoint:
    """One receiver and which alerts it wants. ``None`` filters mean "everything"."""

    name: str
    url: str
    secret: bytes | None = field(default=None, repr=False)
    min_severity: Severity = Severity.WARNING
    rules: frozenset[Rule] | None = None
    categories: frozenset[Category] | None = None
    loans: frozenset[str] | None = None
    warehouses: frozenset[str] | None = None
    timeout_s: int = 15

    def wants(self, alert: Alert) -> bool:
        """Whether this endpoint receives the messages of ``alert`` (its highest severity)."""
        return (
            alert.severity >= self.min_severity
            and (self.rules is None or alert.rule in self.rules)
            and (self.categories is None or alert.category in self.categories)
            and (self.loans is None or (alert.loan_id is not None and alert.loan_id in self.loans))
            and (self.warehouses is None or alert.warehouse in self.warehouses)
        )


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    store: str
    anchor_key_file: Path
    alerts: AlertsSection
    webhooks: tuple[WebhookEndpoint, ...]


def load(path: Path) -> AlertsConfig:
    """The store, ``[alerts]`` and ``[[webhooks]]`` of an anchor config file (validated)."""
    try:
        raw = load_toml(path)
    except ValidationError as exc:
        raise ConfigError(str(path), [str(exc)]) from None
    problems: list[str] = []
    rest = {k: v for k, v in raw.items() if k not in ("alerts", "webhooks")}
    anchor = anchor_config.parse(rest, path.parent, problems)
    ours = Fields({k: v for k, v in raw.items() if k in ("alerts", "webhooks")}, "", problems)
    alerts = parse_alerts(ours.table("alerts", required=False), path.parent)
    webhooks = parse_webhooks(ours.tables("webhooks"))
    ours.finish()
    check(alerts, webhooks, anchor.anchor.key_file, problems)
    if problems:
        raise ConfigError(str(path), problems)
    return AlertsConfig(anchor.anchor.store, anchor.anchor.key_file, alerts, webhooks)


def check(
    alerts: AlertsSection,
    webhooks: tuple[WebhookEndpoint, ...],
    anchor_key_file: Path,
    problems: list[str],
) -> None:
    """Cross-table rules: every endpoint is signed somehow; the alert key is its own."""
    for hook in webhooks:
        if hook.secret is None and alerts.signing_key_file is None:
            problems.append(
                f"webhooks[{hook.name}]: no secret and no [alerts].signing_key_file: "
                "its messages could not be signed"
            )
    if alerts.signing_key_file is not None and (
        alerts.signing_key_file.resolve() == anchor_key_file.resolve()
    ):
        problems.append(
            "alerts.signing_key_file: is the anchor's checkpoint key; use a key of its own "
            "(webhook signatures carry no pledgewatch domain separation)"
        )


def parse_alerts(f: Fields, base: Path) -> AlertsSection:
    key_file = f.optional_text("signing_key_file")
    proof_url = f.optional_text("proof_url")
    if proof_url is not None and (
        "{event_id}" not in proof_url or not proof_url.startswith(("https://", "http://"))
    ):
        f.problems.append(
            f"{f.path}.proof_url: got {proof_url!r}, want an http(s) URL holding {{event_id}}"
        )
    schedule = _integers(f, "retry_schedule_s", DEFAULT_SCHEDULE_S, low=1, high=MAX_DELAY_S)
    section = AlertsSection(
        signing_key_file=None if key_file is None else base / key_file,
        proof_url=proof_url,
        retry_schedule_s=schedule,
        jitter=f.boolean("jitter", True),
        max_retry_after_s=f.integer("max_retry_after_s", 86_400, low=1, high=MAX_DELAY_S),
        deliver_every_ms=f.integer("deliver_every_ms", 1000, low=10, high=3_600_000),
    )
    f.finish()
    return section


def parse_webhooks(fields_list: list[Fields]) -> tuple[WebhookEndpoint, ...]:
    """``[[webhooks]]`` tables → endpoints; problems go to each ``Fields``' list."""
    endpoints: list[WebhookEndpoint] = []
    names: set[str] = set()
    for f in fields_list:
        endpoint = _endpoint(f)
        if endpoint.name in names:
            f.problems.append(f"{f.path}.name: {endpoint.name!r} is used twice")
        names.add(endpoint.name)
        endpoints.append(endpoint)
    return tuple(endpoints)


def _endpoint(f: Fields) -> WebhookEndpoint:
    name = f.text("name")
    if name and ID_PATTERN.fullmatch(name) is None:
        f.problems.append(f"{f.path}.name: got {name!r}, want [a-z0-9][a-z0-9._-]*")
    url = f.text("url")
    allow_http = f.boolean("allow_http", False)
    _check_url(f, url, allow_http)
    secret: bytes | None = None
    secret_text = f.optional_text("secret")
    if secret_text is not None:
        try:
            secret = parse_secret(secret_text)
        except AlertError as exc:
            f.problems.append(f"{f.path}.secret: {exc}")
    severity = f.choice("min_severity", SEVERITIES, "warning")
    rules = _choices(f, "rules", {r.value: r for r in Rule})
    categories = _choices(f, "categories", {c.value: c for c in Category})
    loans = _names(f, "loans")
    warehouses = _names(f, "warehouses")
    endpoint = WebhookEndpoint(
        name=name,
        url=url,
        secret=secret,
        min_severity=Severity[severity.upper()],
        rules=rules,
        categories=categories,
        loans=loans,
        warehouses=warehouses,
        timeout_s=f.integer("timeout_s", 15, low=1, high=120),
    )
    f.finish()
    return endpoint


def _check_url(f: Fields, url: str, allow_http: bool) -> None:
    if not url:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        f.problems.append(f"{f.path}.url: got {url!r}, want https://host/…")
    elif parts.scheme == "http" and not (allow_http or _loopback(parts.hostname)):
        f.problems.append(
            f"{f.path}.url: got {url!r}: alerts carry loan data, want https:// "
            "(or allow_http = true)"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _list(f: Fields, key: str, item: type, what: str) -> list[Any] | None:
    """A non-empty TOML array of ``item``; ``None`` if the key is absent."""
    # Fields has no list getter yet: its (underscored) generic getter does the type check.
    if key not in f._raw:
        f._seen.add(key)
        return None
    value = f._get(key, list, f"a list of {what}", [])
    if not value:
        f.problems.append(f"{f.path}.{key}: empty; leave the key out to mean all")
        return []
    bad = [v for v in value if not isinstance(v, item) or isinstance(v, bool)]
    if bad:
        f.problems.append(f"{f.path}.{key}: got {bad!r}, want {what}")
        return []
    return value


def _integers(
    f: Fields, key: str, default: tuple[int, ...], *, low: int, high: int
) -> tuple[int, ...]:
    value = _list(f, key, int, "integers")
    if value is None:
        return default
    out = [v for v in value if low <= v <= high]
    if len(out) != len(value):
        f.problems.append(f"{f.path}.{key}: want each value in {low}..{high}")
    return tuple(out) or default


def _choices(f: Fields, key: str, allowed: dict[str, T]) -> frozenset[T] | None:
    value = _list(f, key, str, "strings")
    if value is None:
        return None
    unknown = sorted(v for v in value if v not in allowed)
    if unknown:
        f.problems.append(f"{f.path}.{key}: unknown {unknown}, want some of {sorted(allowed)}")
    return frozenset(allowed[v] for v in value if v in allowed)


def _names(f: Fields, key: str) -> frozenset[str] | None:
    value = _list(f, key, str, "strings")
    if value is None:
        return None
    if any(not v for v in value):
        f.problems.append(f"{f.path}.{key}: empty name")
    return frozenset(value)
