"""The gateway's command line: keygen output, exit code 2 for bad config or key, the stale
alarm from the outbox age limit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devices.base import Reading
from gateway import config as gateway_config
from gateway.health import Alarm, HealthState
from gateway.service import Clock, GatewayService
from gateway.store import Identity
from pledgewatch.events import Kind
from pledgewatch.signing import SigningKey, key_id


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pledgewatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keygen_prints_key_id_and_public_key_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = cli("gateway", "keygen", "--key", str(tmp_path / "gw.key"))
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
    public = bytes.fromhex(lines["public key"].strip())
    assert lines["key id"].strip() == key_id(public)
    assert oct(os.stat(tmp_path / "gw.key").st_mode & 0o777) == "0o600"
    again = cli("gateway", "keygen", "--key", str(tmp_path / "gw.key"))
    assert again.returncode == 2
    assert "refusing to replace" in again.stderr


CONFIG = """
[gateway]
id = "gw-1"
warehouse = "wh-1"
key_file = "gw.key"
state_db = "gw.db"

[anchor]
public_key = "{anchor}"

[mqtt]
host = "127.0.0.1"
port = 1
"""


def test_bad_config_or_key_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway]\nid = 'GW'\n")
    result = cli("gateway", "run", "--config", str(bad))
    assert result.returncode == 2
    assert "gateway.warehouse: missing" in result.stderr
    assert "gateway.id" in result.stderr
    good = tmp_path / "gw.toml"
    good.write_text(CONFIG.format(anchor="ab" * 32))
    result = cli("gateway", "run", "--config", str(good))  # no key file yet
    assert result.returncode == 2
    assert "cannot read gateway key" in result.stderr
    assert not (tmp_path / "gw.db").exists()


def test_outbox_older_than_max_age_raises_the_stale_alarm(tmp_path: Path) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(CONFIG.format(anchor="ab" * 32) + "\n[outbox]\nmax_age_s = 60\n")
    config = gateway_config.load(path)
    now = [1_000_000]
    clock = Clock(lambda: now[0], lambda: now[0] / 1000)
    key = SigningKey(bytes(32))
    service = GatewayService(config, key, [], clock)
    service.store.open(Identity("wh-1", "gw-1", key.key_id))
    try:
        service.builder.append([Reading("lc-1", Kind.WEIGHT, 1, bay="A1", grams=5)], now[0])
        assert service.health().state is HealthState.OK
        now[0] += 61_000
        health = service.health()
        assert Alarm.OUTBOX_STALE in health.alarms
        assert health.state is HealthState.ALARM
        assert health.oldest_unsent_age_ms == 61_000
        assert service.outbox.depth == 1  # stale events are kept, never dropped
    finally:
        service.store.close()
