"""Child processes of the demo: each in its own process group, always stopped and reaped.

The bank side runs exactly as an operator would run it: ``python -m pledgewatch.cli …``
commands with config files in the demo's output folder. Every child gets a new session
(``start_new_session``), so a Ctrl-C in the terminal reaches only the demo, which then stops
its children in order: SIGTERM to the whole group, up to ``grace_s`` to exit, then SIGKILL,
and always ``wait()`` — no zombies, no orphans holding ports.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.demo.errors import DemoFailed


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def poll(self) -> int | None:
        return self.proc.poll()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "pledgewatch.cli", *args]


@dataclass
class Children:
    grace_s: float = 15.0
    running: dict[str, Child] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def spawn(
        self, name: str, argv: list[str], log_path: Path, stdout_path: Path | None = None
    ) -> Child:
        """Start a child; stderr (and stdout unless ``stdout_path``) go to ``log_path``."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            if name in self.running:
                raise DemoFailed(f"child {name!r} is already running")
            with log_path.open("ab") as log, (stdout_path or log_path).open("ab") as out:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=log,
                    start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            child = Child(name, proc, log_path)
            self.running[name] = child
        return child

    def cli(self, *args: str, log_path: Path, timeout_s: float = 60) -> str:
        """Run one short ``pledgewatch`` command to completion and return its stdout (also
        kept in ``log_path``; stderr in ``log_path`` + ``.err``), or raise DemoFailed."""
        name = f"pledgewatch {' '.join(args[:2])} #{next(self._ids)}"
        err_path = log_path.with_name(log_path.name + ".err")
        log_path.unlink(missing_ok=True)
        child = self.spawn(name, cli_argv(*args), err_path, stdout_path=log_path)
        try:
            code = child.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DemoFailed(
                f"{name} did not finish in {timeout_s:.0f} s; see {err_path}"
            ) from None
        finally:
            self.stop(name)
        text = log_path.read_text(errors="replace")
        if code != 0:
            errors = err_path.read_text(errors="replace")
            raise DemoFailed(f"`{' '.join(args[:2])}` exited {code}:\n{(text + errors)[-1500:]}")
        return text

    def check_alive(self, name: str) -> None:
        child = self.running.get(name)
        if child is None or child.poll() is not None:
            tail = "" if child is None else child.log_tail()
            raise DemoFailed(f"{name} is not running; its log ends:\n{tail}")

    def stop(self, name: str) -> int | None:
        """SIGTERM the child's group, wait ``grace_s``, then SIGKILL; always reaped."""
        with self._lock:
            child = self.running.pop(name, None)
        if child is None:
            return None
        proc = child.proc
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        # Anything the child itself started in its group goes too.
        _signal_group(proc.pid, signal.SIGKILL)
        return proc.returncode

    def stop_all(self) -> None:
        """Stop every child, newest first (the anchor before the witness and the broker)."""
        with self._lock:
            names = list(self.running)
        for name in reversed(names):
            self.stop(name)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group is gone: nothing to stop
        os.killpg(pgid, sig)


def wait_for(
    predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.1
) -> None:
    """Poll ``predicate()`` until true; DemoFailed naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def leftovers(folder: Path, ports: list[int]) -> list[str]:
    """Processes whose command line names ``folder``, and ports still accepting connections."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # it exited while we looked
        if str(folder) in argv:
            found.append(f"pid {entry.name}: {argv.strip()[:80]}")
    found += [f"port {port} still open" for port in ports if port_open(port)]
    return found


def port_open(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0
