"""Long-running commands stop cleanly on SIGTERM, whatever threads their libraries started.

Regression: importing pandas (the reconciler) starts numpy's OpenBLAS threads before the
command blocks its stop signals; the kernel handed SIGTERM to one of them and the anchor died
with -15 instead of shutting down (found by the anchor benchmark).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from anchor import keyfile
from gateway import keystore

BROKER_NOWHERE = '[mqtt]\nhost = "127.0.0.1"\nport = 1\n'


def run_then_term(args: list[str], cwd: Path) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pledgewatch.cli", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(3)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def test_anchor_run_exits_0_on_sigterm(tmp_path: Path) -> None:
    keyfile.generate(tmp_path / "anchor.key")
    (tmp_path / "anchor.toml").write_text(
        '[anchor]\norigin = "sig.test/log"\nkey_file = "anchor.key"\n' + BROKER_NOWHERE
    )
    assert run_then_term(["anchor", "run", "--config", "anchor.toml"], tmp_path) == 0


def test_gateway_run_exits_0_on_sigterm(tmp_path: Path) -> None:
    keystore.generate(tmp_path / "gw.key")
    (tmp_path / "gw.toml").write_text(
        '[gateway]\nid = "gw-1"\nwarehouse = "wh-1"\nkey_file = "gw.key"\n'
        'state_db = "gw.db"\n\n[anchor]\npublic_key = "' + "ab" * 32 + '"\n\n' + BROKER_NOWHERE
    )
    assert run_then_term(["gateway", "run", "--config", "gw.toml"], tmp_path) == 0
