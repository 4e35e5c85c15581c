"""Runs the real anchor (``pledgewatch anchor run``) and the bank's witness
(``pledgewatch witness run``) as subprocesses on loopback, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from anchor import keyfile

from servers import free_port

ORIGIN = "pledgewatch.test/log"
WITNESS_NAME = "witness.bank.test"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pledgewatch.cli", *args],
        capture_output=True,
        text=True,
        check=check,
        timeout=120,
    )


def wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@dataclass
class Proc:
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pledgewatch.cli", *self.argv],
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return 0 if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(
                f"{self.argv[:2]} exited {self.proc.returncode}:\n"
                f"{self.log_path.read_text(errors='replace')[-3000:]}"
            )


@dataclass
class AnchorRig:
    workdir: Path
    broker_port: int
    witness: bool = True
    gap_timeout_s: int = 300
    worker: str = "worker-1"
    store: str = "sqlite:anchor.db"
    extra_toml: str = ""
    procs: list[Proc] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        key_path = self.workdir / "anchor.key"
        self.key = keyfile.load(key_path) if key_path.exists() else keyfile.generate(key_path)
        self.witness_key = keyfile.generate(self.workdir / "witness.key")
        self.witness_port = free_port()
        self.config_path = self.workdir / "anchor.toml"
        self.write_config()
        cli("anchor", "init", "--config", str(self.config_path))

    def write_config(self, worker: str | None = None) -> Path:
        worker = worker or self.worker
        lines = [
            "[anchor]",
            f'origin = "{ORIGIN}"',
            'key_file = "anchor.key"',
            f'store = "{self.store}"',
            f'worker = "{worker}"',
            "",
            "[mqtt]",
            'host = "127.0.0.1"',
            f"port = {self.broker_port}",
            "",
            "[log]",
            "checkpoint_interval_ms = 200",
            f"gap_timeout_s = {self.gap_timeout_s}",
            "",
            "[ledger]",
            'url = "sqlite:ledger.db"',
            "every = 1",
            "",
        ]
        if self.witness:
            lines += [
                "[witness]",
                f'url = "http://127.0.0.1:{self.witness_port}"',
                f'name = "{WITNESS_NAME}"',
                f'public_key = "{self.witness_key.public_key.hex()}"',
                "",
            ]
            (self.workdir / "witness.toml").write_text(
                "\n".join(
                    [
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
                        f'public_key = "{self.key.public_key.hex()}"',
                        "",
                    ]
                )
            )
        lines.append(self.extra_toml)
        path = self.config_path if worker == self.worker else self.workdir / f"anchor-{worker}.toml"
        path.write_text("\n".join(lines))
        return path

    def start_worker(self, worker: str) -> Proc:
        """Another anchor worker on the same store and broker (shared subscription)."""
        config = self.write_config(worker)
        proc = Proc(
            ["anchor", "run", "--config", str(config)], self.workdir / f"anchor-{worker}.log"
        )
        proc.start()
        self.procs.append(proc)
        return proc

    def enrol(self, warehouse: str, gateway: str, public_key: bytes) -> None:
        cli(
            "anchor",
            "enrol",
            "--config",
            str(self.config_path),
            "--warehouse",
            warehouse,
            "--gateway",
            gateway,
            "--public-key",
            public_key.hex(),
        )

    def start(self) -> None:
        if self.witness and not any(p.argv[0] == "witness" for p in self.procs):
            witness = Proc(
                ["witness", "run", "--config", str(self.workdir / "witness.toml")],
                self.workdir / "witness.log",
            )
            witness.start()
            self.procs.append(witness)
        anchor = Proc(
            ["anchor", "run", "--config", str(self.config_path)],
            self.workdir / f"anchor-{self.worker}.log",
        )
        anchor.start()
        self.procs.append(anchor)

    def wait_subscribed(self, timeout: float = 20) -> None:
        """Messages published before the anchor's first subscription have nowhere to go."""
        log = self.anchor_proc.log_path
        wait_until(
            lambda: "subscribed to $share/" in log.read_text(errors="replace"),
            timeout,
            "the anchor's subscription",
        )

    @property
    def anchor_proc(self) -> Proc:
        return next(p for p in reversed(self.procs) if p.argv[0] == "anchor")

    def kill_anchor(self) -> None:
        proc = self.anchor_proc
        proc.kill()
        self.procs.remove(proc)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()

    def status(self) -> dict[str, object]:
        out = cli("anchor", "status", "--json", "--config", str(self.config_path)).stdout
        return json.loads(out)  # type: ignore[no-any-return]

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        if self.store.startswith("postgresql://"):
            import psycopg

            with psycopg.connect(self.store, autocommit=True) as conn:
                return [tuple(r) for r in conn.execute(sql.replace("?", "%s"), params)]
        path = self.workdir / "anchor.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def wait_status(self, predicate: object, timeout: float = 60) -> dict[str, object]:
        last: dict[str, object] = {}

        def ok() -> bool:
            nonlocal last
            for proc in self.procs:
                proc.check_alive()
            last = self.status()
            return bool(predicate(last))  # type: ignore[operator]

        try:
            wait_until(ok, timeout, "anchor status")
        except AssertionError:
            raise AssertionError(
                f"last status {last}\n"
                + self.anchor_proc.log_path.read_text(errors="replace")[-3000:]
            ) from None
        return last
