"""``[api]`` of the anchor's config file: where the read API listens and whose key checks
the checkpoints it hands out. Loaded once into a frozen dataclass; every problem in one
``ConfigError`` (the anchor's own sections are validated by ``anchor.config`` in the same pass).

::

    [api]
    listen = "127.0.0.1:8080"      # host:port; [v6]:port also accepted
    log_public_key = "…64 hex…"    # optional: else derived from [anchor] key_file
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anchor import config as anchor_config
from anchor.config import AnchorConfig
from anchor.errors import ConfigError
from pledgewatch.errors import ValidationError
from pledgewatch.tomlconf import Fields, load_toml

DEFAULT_LISTEN = "127.0.0.1:8080"


@dataclass(frozen=True, slots=True)
class ApiSection:
    host: str
    port: int
    log_public_key: bytes | None  # None: take it from the anchor's key file


@dataclass(frozen=True, slots=True)
class ApiConfig:
    anchor: AnchorConfig
    api: ApiSection


def load(path: Path) -> ApiConfig:
    """The anchor's config with its ``[api]`` table (optional: defaults apply)."""
    try:
        raw = load_toml(path)
    except ValidationError as exc:
        raise ConfigError(str(path), [str(exc)]) from None
    problems: list[str] = []
    anchor = anchor_config.parse(raw, path.parent, problems)
    ours = Fields({k: v for k, v in raw.items() if k == "api"}, "", problems)
    api = parse_api(ours.table("api", required=False))
    if problems:
        raise ConfigError(str(path), problems)
    return ApiConfig(anchor, api)


def parse_api(f: Fields) -> ApiSection:
    host, port = parse_listen(f.text("listen", DEFAULT_LISTEN), f.problems, f"{f.path}.listen")
    key = f.public_key("log_public_key", required=False)
    f.finish()
    return ApiSection(host, port, key)


def parse_listen(text: str, problems: list[str], where: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) → (host, port); a problem is recorded if malformed."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        problems.append(f"{where}: got {text!r}, want host:port like {DEFAULT_LISTEN}")
        return "127.0.0.1", 0
    return host, int(port)
