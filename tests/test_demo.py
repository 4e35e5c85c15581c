"""`pledgewatch demo` (what `make demo` runs): the whole pipeline on embedded defaults.

Run as a subprocess, exactly as a user runs it, once per broker: every expected alert fires
(and nothing else), the proof file verifies independently, the statement names the loan,
and no process or port is left behind — also when the demo is interrupted half-way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook

from anchor import keyfile
from gateway.demo.receiver import new_secret, signature_ok
from gateway.demo.world import EXPECTED

from servers import require_binary

RULES = sorted({e.rule for e in EXPECTED})


def demo_argv(out: Path, broker: str) -> list[str]:
    return [sys.executable, "-m", "pledgewatch.cli", "demo", "--out", str(out), "--broker", broker]


def leftover_processes(out: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(out) in argv:
            found.append(argv)
    return found


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def ports_of(stdout: str, out: Path) -> list[int]:
    """The broker's and the receiver's ports (printed) and the witness's (in its config)."""
    ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", stdout)]
    witness = out / "bank" / "witness.toml"
    if witness.exists():
        ports += [int(p) for p in re.findall(r"port = (\d+)", witness.read_text())]
    return ports


def check_nothing_left(out: Path, stdout: str) -> None:
    assert leftover_processes(out) == []
    ports = ports_of(stdout, out)
    assert ports, stdout
    assert [p for p in ports if port_open(p)] == []


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["amqtt", "mosquitto"])
def test_demo_fires_exactly_the_expected_alerts_proves_and_leaves_nothing(
    tmp_path: Path, broker: str
) -> None:
    if broker == "mosquitto":
        require_binary("mosquitto")
    out = tmp_path / "demo"
    started = time.monotonic()
    result = subprocess.run(
        demo_argv(out, broker), capture_output=True, text=True, timeout=180, check=False
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Traceback" not in result.stderr
    stdout = result.stdout
    assert f"broker   {broker}" in stdout
    for rule in RULES:  # the summary's expected-vs-fired table
        want = sum(1 for e in EXPECTED if e.rule == rule)
        assert re.search(rf"^  {rule} +{want} +{want} .*\[ok\]$", stdout, re.M), stdout
    assert re.search(
        r"^\[ *[\d.]+s\] ALERT opened CRITICAL UNAUTHORIZED_RELEASE loan LN-1", stdout, re.M
    )
    assert "webhooks verified (alert.opened)   5 of 5, 0 refused" in stdout
    assert "result: OK" in stdout
    events = int(re.search(r"^events stored +([\d,]+)$", stdout, re.M)[1].replace(",", ""))  # type: ignore[index]
    assert events > 8000
    assert re.search(rf"^witnessed up to +{events + 3}$", stdout, re.M)  # + 3 key leaves
    assert re.search(rf"^ledger anchors up to +{events + 3}$", stdout, re.M)

    # The proof file verifies on its own, with keys read from the demo's key files.
    anchor_key = keyfile.load(out / "bank" / "anchor.key").public_key.hex()
    witness_key = keyfile.load(out / "bank" / "witness.key").public_key.hex()
    verify = subprocess.run(
        [
            sys.executable,
            "-m",
            "pledgewatch.cli",
            "verify",
            str(out / "proof-theft.json"),
            "--anchor-key",
            anchor_key,
            "--witness-key",
            f"demo.bank/witness:{witness_key}",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    proof = json.loads((out / "proof-theft.json").read_text())
    assert "UNLOAD" in json.dumps(proof)

    html = (out / "statement-LN-1" / "statement.html").read_text()
    assert "LN-1" in html and "Jinhai Copper Trading Co." in html
    csv_rows = (out / "statement-LN-1" / "statement.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + 29  # header + every day of the month (start and end day)
    assert all(",ok," in row for row in csv_rows[1:])  # the book is in force all month

    check_nothing_left(out, stdout)
    assert elapsed < 120  # ~20-40 s on a loaded 2-core machine; loose for CI


@pytest.mark.slow
def test_demo_interrupted_mid_replay_stops_every_child_and_frees_its_ports(
    tmp_path: Path,
) -> None:
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        demo_argv(out, "amqtt"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if " replay " in line:
                break
        time.sleep(2)  # mid-replay: anchor, witness and three gateways running
        assert len(leftover_processes(out)) >= 5
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stdout = "".join(lines) + rest
    assert proc.returncode == 1, stdout + err
    assert "interrupted: every child process was stopped" in err
    check_nothing_left(out, stdout)


def test_demo_refuses_an_output_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "something.txt").write_text("keep me")
    result = subprocess.run(
        demo_argv(tmp_path, "amqtt"), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "not empty" in result.stderr
    assert (tmp_path / "something.txt").read_text() == "keep me"


def test_receiver_accepts_standard_webhooks_signatures_and_refuses_altered_ones() -> None:
    secret = new_secret()
    body = b'{"data":{"rule":"SHORTFALL"},"type":"alert.opened"}'
    stamp = dt.datetime.now(dt.UTC).replace(microsecond=0)
    signature = Webhook(secret).sign("msg-1", stamp, body.decode())  # the reference library
    headers = {
        "webhook-id": "msg-1",
        "webhook-timestamp": str(int(stamp.timestamp())),
        "webhook-signature": signature,
    }
    assert signature_ok(secret, headers, body)
    assert not signature_ok(secret, headers, body.replace(b"SHORTFALL", b"COVERAGE_WARNING"))
    assert not signature_ok(secret, {**headers, "webhook-id": "msg-2"}, body)
    assert not signature_ok(secret, {**headers, "webhook-timestamp": "1"}, body)
    assert not signature_ok(new_secret(), headers, body)
    v1 = signature.split(",", 1)[1]
    assert not signature_ok(secret, {**headers, "webhook-signature": f"v1a,{v1}"}, body)
    assert signature_ok(secret, {**headers, "webhook-signature": f"v1a,xyz v1,{v1}"}, body)
