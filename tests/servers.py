"""Real servers for tests: child processes on random loopback ports, each in its own temp dir.

`ServerProcess` is the generic part (spawn, wait until ready, stop, kill -9, restart on the same
ports, log tail, cleanup); one subclass per server writes its config and names its command.
`MosquittoServer` is the first; PostgreSQL, VictoriaMetrics, InfluxDB 1.x and anvil follow the
same shape: fields for the options, `_prepare()` writes files into `workdir`, `_command()` is the
argv, `_ports()` the ports that must accept connections, `_ready_marker` a log line that proves
start-up finished.

`MqttProbe` is a small paho-mqtt 2.x client for checking what a broker did (connect,
subscribe, publish QoS 1 and wait for the PUBACK reason code, collect messages).

Nothing here imports pytest at module level, so the module also works from bench/ scripts;
`require_binary()` imports it lazily.

Every started server is registered in `_LIVE` until `close()`; `stop_all()` (called by the
conftest session finaliser and by `atexit`) stops the rest. A pytest run killed with SIGKILL
cannot clean up; orphans then keep their random ports until killed by hand.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

LOOPBACK = "127.0.0.1"
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")


class ServerError(RuntimeError):
    """A test server failed to start, stop or reconfigure; the message carries its log tail."""


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port that was free on `host` a moment ago (bind to port 0, then close).

    Another process may take it before the server binds it; `ServerProcess.start()` retries
    with a fresh port when the first start fails that way.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def find_binary(name: str, extra_dirs: Iterable[str | Path] = ()) -> str | None:
    """Return the path of executable `name` from PATH, the sbin dirs, or `extra_dirs`.

    `extra_dirs` may hold glob patterns (`/usr/lib/postgresql/*/bin`); matches are tried in
    reverse sorted order, so the highest version wins. Returns None when nothing is found.
    """
    found = shutil.which(name)
    if found:
        return found
    dirs: list[str] = list(SBIN_DIRS)
    for pattern in extra_dirs:
        dirs.extend(sorted(glob.glob(str(pattern)), reverse=True))
    for directory in dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_binary(name: str, extra_dirs: Iterable[str | Path] = ()) -> str:
    """Return the path of `name`, or end the current test: skip locally, fail when CI=true.

    A missing server must never turn a CI run green by skipping (STYLE.md rule 13).
    """
    import pytest

    path = find_binary(name, extra_dirs)
    if path is not None:
        return path
    message = (
        f"required binary {name!r} not found on PATH or in {[*SBIN_DIRS, *map(str, extra_dirs)]}"
        "; run `make test` (scripts/ensure-servers.sh installs the test servers)"
    )
    if os.environ.get("CI", "").strip().lower() in {"true", "1"}:
        pytest.fail(f"{message} [CI=true: a missing server is an error, not a skip]", False)
    pytest.skip(message)


def chown_tree(root: Path, user: str) -> None:
    """Give `root` and everything below it to `user` and its primary group (needs root).

    Directories become 0750 and files 0640: readable by the server's user and group only.
    """
    entry = pwd.getpwnam(user)
    for path in [root, *root.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        if not path.is_symlink():
            path.chmod(0o750 if path.is_dir() else 0o640)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


_LIVE: set[ServerProcess] = set()


def stop_all() -> None:
    """Stop every server that was started and not yet closed (session finaliser, atexit)."""
    for server in list(_LIVE):
        server.close()


atexit.register(stop_all)


@dataclass(kw_only=True, eq=False)
class ServerProcess:
    """One real server as a child process, with its config, data and log in `workdir`.

    Constructing does no I/O; `start()` creates the temp dir, picks free ports (once: a
    restart keeps them), writes the config and waits until the server is ready. The log file
    collects stdout and stderr of every run, so a restart appends to it.
    """

    name: ClassVar[str] = "server"
    host: str = LOOPBACK
    port: int = 0
    start_timeout: float = 10.0
    stop_timeout: float = 10.0
    base_dir: Path | None = None
    keep_workdir: bool = False

    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _workdir: Path | None = field(default=None, init=False, repr=False)
    _log_offset: int = field(default=0, init=False, repr=False)
    _ready_marker: ClassVar[str | None] = None
    _port_clash_marker: ClassVar[str] = "Address already in use"
    _start_attempts: ClassVar[int] = 3

    def _prepare(self) -> None:
        """Write config and data files into `workdir`; called before every start."""

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ports(self) -> list[int]:
        return [self.port]

    def _assign_ports(self) -> None:
        self.port = free_port(self.host)

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            base = None if self.base_dir is None else str(self.base_dir)
            self._workdir = Path(tempfile.mkdtemp(prefix=f"pw-{self.name}-", dir=base))
        return self._workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def _existing_log(self) -> Path | None:
        """The log path if the workdir exists; never creates it (safe after `close()`)."""
        return None if self._workdir is None else self.log_path

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log (all runs), for error messages and debugging."""
        log = self._existing_log()
        try:
            text = "" if log is None else log.read_text(errors="replace")
        except FileNotFoundError:
            text = ""
        return "\n".join(text.splitlines()[-lines:]) or "(no log)"

    def log_since_start(self) -> str:
        """Log output of the current (or last) run only."""
        log = self._existing_log()
        if log is None or not log.exists():
            return ""
        with log.open("rb") as file:
            file.seek(self._log_offset)
            return file.read().decode(errors="replace")

    def log_size(self) -> int:
        log = self._existing_log()
        return log.stat().st_size if log is not None and log.exists() else 0

    def wait_for_log(self, text: str, *, since: int | None = None, timeout: float = 10.0) -> None:
        """Wait until `text` appears in the log after byte offset `since` (default: this run)."""
        offset = self._log_offset if since is None else since
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                if text.encode() in log.read():
                    return
            if not self.running:
                break
            time.sleep(0.02)
        raise ServerError(self._failure(f"log line {text!r} did not appear"))

    def start(self) -> None:
        """Start the server and block until its ports accept connections and it is ready.

        On the very first start a port clash (another process took a `free_port()` port,
        seen as `_port_clash_marker` in the log) is retried with fresh ports; a restart must
        keep its ports, so it is not retried.
        """
        if self.running:
            raise ServerError(f"{self.name} is already running (pid {self.pid})")
        first = self.port == 0
        for attempt in range(1, self._start_attempts + 1):
            if first:
                self._assign_ports()
            try:
                self._spawn_and_wait()
            except ServerError:
                clash = self._port_clash_marker in self.log_since_start()
                if not (first and clash) or attempt == self._start_attempts:
                    raise
            else:
                return

    def _spawn_and_wait(self) -> None:
        self._prepare()
        self._log_offset = self.log_size()
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _LIVE.add(self)
        try:
            self._wait_ready()
        except ServerError:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        pending = list(self._ports())
        while time.monotonic() < deadline:
            if not self.running:
                raise ServerError(self._failure("exited during start-up"))
            pending = [port for port in pending if not _port_open(self.host, port)]
            if not pending and self._is_ready():
                return
            time.sleep(0.02)
        raise ServerError(
            self._failure(f"not ready within {self.start_timeout} s (ports waiting: {pending})")
        )

    def _is_ready(self) -> bool:
        if self._ready_marker is None:
            return True
        return self._ready_marker in self.log_since_start()

    def _failure(self, what: str) -> str:
        code = None if self._proc is None else self._proc.poll()
        return (
            f"{self.name} {what}; exit code {code}; command {self._command()}\n"
            f"--- log tail ({self.log_path}) ---\n{self.log_tail()}"
        )

    def signal(self, signum: int) -> None:
        """Send `signum` to the running server."""
        if self._proc is None or not self.running:
            raise ServerError(f"{self.name} is not running; cannot send signal {signum}")
        self._proc.send_signal(signum)

    def stop(self) -> None:
        """SIGTERM and wait (a clean shutdown); escalate to SIGKILL after `stop_timeout`."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL and reap: a crash, with no chance to flush anything."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc = None

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or with `crash=True` kill -9) and start again on the same ports and data."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its workdir (unless `keep_workdir`)."""
        self.stop()
        _LIVE.discard(self)
        if self._workdir is not None and not self.keep_workdir:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Denied publishes are only visible in the broker log at "debug"; `verbose=True` turns it on.
class MosquittoFactory(Protocol):
    """The `mosquitto_factory` fixture: MosquittoServer options in, a (started) broker out."""

    def __call__(self, *, start: bool = True, **options: Any) -> MosquittoServer: ...


_QUIET_LOG_TYPES = ("error", "warning", "notice", "information")

PLEDGEWATCH_ACL: tuple[str, ...] = (
    "# The anchor reads every event and writes every receipt.",
    "user anchor",
    "topic readwrite pledgewatch/#",
    "",
    "# A gateway (username = gateway id) writes only its own events, reads only its receipts.",
    "pattern write pledgewatch/v1/+/%u/events",
    "pattern write pledgewatch/v1/+/%u/health",
    "pattern read pledgewatch/v1/+/%u/receipts",
)


@dataclass(kw_only=True, eq=False)
class MosquittoServer(ServerProcess):
    """Mosquitto 2 on loopback: plain listener on `port`, optional TLS listener on `tls_port`.

    - `users`: username → password; when non-empty the broker requires a password
      (`allow_anonymous false`) and the file is written with `mosquitto_passwd -b`.
    - `acl`: lines of an ACL file (see `PLEDGEWATCH_ACL`); None means no ACL file.
    - `tls`: also listen with TLS, using a throwaway CA and server cert (`ca_path`) for
      127.0.0.1 and localhost, made with the openssl CLI.
    - Persistence (on by default), in `workdir/persist`. What survives what:

      * SIGTERM (`stop()`, `restart()`): the whole in-memory database is written on exit,
        so persistent sessions and their queued QoS 1 messages survive.
      * SIGKILL (`kill()`, `restart(crash=True)`): only the last snapshot survives. Mosquitto
        never writes per message; it rewrites the whole database (`mosquitto.db.new`,
        fflush, fsync, rename) from its main loop: every `autosave_interval` seconds (the
        check is `last + interval < now` on whole seconds, so 1 means every ~2 s), or with
        `autosave_on_changes` once that many changes piled up, and on SIGUSR1 (`save()`).
        The snapshot is taken after a whole batch of network events is handled and the
        PUBACKs are already written, so there is always a window in which a publisher holds
        a PUBACK for a message that exists only in broker memory; kill -9 loses it (and
        redelivers messages acknowledged after the snapshot). Measured here with 5,000
        QoS 1 messages: `autosave_on_changes` with interval 1 lost 1 of them and made
        publishing ~28x slower (one full rewrite per loop pass); the time-based default lost
        all that arrived after the last snapshot. Hence: only the anchor's receipt releases
        an event from the gateway outbox. Tests that need a durable point call `save()`.
      * Only sessions whose *latest* CONNECT had clean start 0 are written at all
        (`persist__client_save` checks `clean_start == false`, still so upstream). An MQTT 5
        client that connects with clean_start=1 and a session expiry keeps its session in
        memory but loses it, with its queue, on any broker restart, even a clean one. paho's
        default `MQTT_CLEAN_START_FIRST_ONLY` does exactly that on the first connect: pass
        `clean_start=False` for durable sessions.

    - Queue limits: Mosquitto's default `max_queued_messages 1000` silently drops QoS 1
      messages queued for a slow or absent persistent subscriber (the tests show exactly
      1000 of 5000 arriving). The default here is 1,000,000 with `max_queued_bytes 0` (no
      byte limit). Not 0 ("no limit"): with 0, Debian's 2.0.11-1.2+deb12u2 disconnected a
      client right after sending it PUBACK 0x87 for a refused publish (upstream's later
      `out_packet_count >= max_queued_messages` check, true for 0, matches that; upstream
      fixed other 0-handling bugs in 2.0.17 and 2.0.22). A large number works everywhere.
    - `max_inflight_messages`: outgoing QoS 1/2 messages in flight per client, and the
      Receive Maximum the broker announces in CONNACK. 20 is Mosquitto's default; 1 would
      force strictly ordered redelivery, more only buys throughput.
    - `run_as`: when we are root, Mosquitto drops to this user *before* reading the password
      and ACL files and writing persistence, so `workdir` is chowned to it (0750/0640) and
      must not live under a root-only directory such as pytest's `tmp_path`. Default: the
      `mosquitto` user when it exists (as in production), else `root`. When we are not
      root the broker runs as us and `run_as` is ignored.
    """

    name: ClassVar[str] = "mosquitto"
    _ready_marker: ClassVar[str | None] = " running"

    users: dict[str, str] = field(default_factory=dict)
    acl: Sequence[str] | None = None
    tls: bool = False
    tls_port: int = 0
    persistence: bool = True
    autosave_interval: int = 1
    autosave_on_changes: bool = False
    max_queued_messages: int = 1_000_000
    max_inflight_messages: int = 20
    run_as: str | None = None
    verbose: bool = False
    extra_config: Sequence[str] = ()
    binary: str | None = None

    def _assign_ports(self) -> None:
        self.port = free_port(self.host)
        if self.tls:
            self.tls_port = free_port(self.host)

    def _ports(self) -> list[int]:
        return [self.port, self.tls_port] if self.tls else [self.port]

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        self._require_tls()
        return f"mqtts://{self.host}:{self.tls_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def password_file(self) -> Path:
        return self.workdir / "passwd"

    @property
    def acl_file(self) -> Path:
        return self.workdir / "acl"

    @property
    def persistence_dir(self) -> Path:
        return self.workdir / "persist"

    @property
    def persistence_file(self) -> Path:
        return self.persistence_dir / "mosquitto.db"

    @property
    def ca_path(self) -> Path:
        self._require_tls()
        return self.workdir / "tls" / "ca.crt"

    def _require_tls(self) -> None:
        if not self.tls:
            raise ServerError("this MosquittoServer was built with tls=False")

    def effective_user(self) -> str | None:
        """The user the broker ends up as when we are root; None when we are not root."""
        if os.geteuid() != 0:
            return None
        if self.run_as is not None:
            return self.run_as
        try:
            pwd.getpwnam("mosquitto")
        except KeyError:
            return "root"
        return "mosquitto"

    def _command(self) -> list[str]:
        binary = self.binary or find_binary("mosquitto")
        if binary is None:
            raise ServerError("mosquitto binary not found; run scripts/ensure-servers.sh")
        return [binary, "-c", str(self.config_path)]

    def _prepare(self) -> None:
        self.persistence_dir.mkdir(exist_ok=True)
        if self.users:
            self._write_password_file()
        if self.acl is not None:
            self.acl_file.write_text("\n".join(self.acl) + "\n")
        if self.tls and not (self.workdir / "tls" / "server.crt").exists():
            make_test_tls(self.workdir / "tls")
        self.config_path.write_text("\n".join(self._config_lines()) + "\n")
        self._hand_over()

    def _hand_over(self) -> None:
        user = self.effective_user()
        if user is not None and user != "root":
            chown_tree(self.workdir, user)

    def _config_lines(self) -> list[str]:
        lines = [
            f"listener {self.port} {self.host}",
            *(
                [
                    f"listener {self.tls_port} {self.host}",
                    f"cafile {self.workdir / 'tls' / 'ca.crt'}",
                    f"certfile {self.workdir / 'tls' / 'server.crt'}",
                    f"keyfile {self.workdir / 'tls' / 'server.key'}",
                ]
                if self.tls
                else []
            ),
            f"allow_anonymous {'false' if self.users else 'true'}",
            *([f"password_file {self.password_file}"] if self.users else []),
            *([f"acl_file {self.acl_file}"] if self.acl is not None else []),
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.persistence_dir}/",
            f"autosave_interval {self.autosave_interval}",
            f"autosave_on_changes {'true' if self.autosave_on_changes else 'false'}",
            f"max_queued_messages {self.max_queued_messages}",
            "max_queued_bytes 0",
            f"max_inflight_messages {self.max_inflight_messages}",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            *(["log_type all"] if self.verbose else [f"log_type {t}" for t in _QUIET_LOG_TYPES]),
            *list(self.extra_config),
        ]
        user = self.effective_user()
        if user is not None:
            lines.insert(0, f"user {user}")
        return lines

    def _write_password_file(self) -> None:
        self.password_file.touch()
        for user, password in self.users.items():
            _mosquitto_passwd(self.password_file, user, password)

    def add_user(self, user: str, password: str) -> None:
        """Add or change a user; a running broker re-reads its password file (SIGHUP).

        Only for brokers built with at least one user: an anonymous broker has no password
        file in its config.
        """
        if not self.users:
            raise ServerError("add_user() needs a broker built with users=... (password file)")
        self.users[user] = password
        if self._workdir is None or not self.password_file.exists():
            return
        _mosquitto_passwd(self.password_file, user, password)
        self._hand_over()
        if self.running:
            self.reload()

    def reload(self) -> None:
        """SIGHUP: re-read config, password and ACL files; returns once the broker did so.

        The broker logs "Reloading config." and reloads in the same main-loop pass, so any
        connection made after this returns sees the new files.
        """
        offset = self.log_size()
        self.signal(signal.SIGHUP)
        self.wait_for_log("Reloading config.", since=offset)

    def save(self, timeout: float = 10.0) -> None:
        """SIGUSR1: make the broker snapshot its database now; returns once the file is renamed.

        After this, everything the broker held at the signal survives a kill -9.
        """
        if not self.persistence:
            raise ServerError("save() needs persistence=True")
        before = _inode(self.persistence_file)
        self.signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while _inode(self.persistence_file) == before:
            if time.monotonic() > deadline or not self.running:
                raise ServerError(self._failure("did not save its database after SIGUSR1"))
            time.sleep(0.01)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _mosquitto_passwd(password_file: Path, user: str, password: str) -> None:
    binary = find_binary("mosquitto_passwd")
    if binary is None:
        raise ServerError("mosquitto_passwd not found; run scripts/ensure-servers.sh")
    result = subprocess.run(
        [binary, "-b", str(password_file), user, password],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServerError(f"mosquitto_passwd failed for {user!r}: {result.stderr.strip()}")


_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = pledgewatch throwaway test CA

[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[v3_server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_test_tls(directory: Path, days: int = 2) -> None:
    """Write a throwaway P-256 CA (`ca.crt`, `ca.key`) and a server cert for 127.0.0.1 and
    localhost (`server.crt`, `server.key`) into `directory`, using the openssl CLI.

    Our own openssl config is passed explicitly, so the system openssl.cnf does not matter.
    """
    openssl = find_binary("openssl")
    if openssl is None:
        raise ServerError("openssl not found; run scripts/ensure-servers.sh")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "openssl.cnf"
    config.write_text(_OPENSSL_CONFIG)
    key_options = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *key_options, "-config", str(config), "-extensions",
         "v3_ca", "-days", str(days), "-keyout", "ca.key", "-out", "ca.crt"],
        [openssl, "req", "-new", *key_options, "-config", str(config), "-subj",
         "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"],
        [openssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-set_serial", str(int.from_bytes(os.urandom(8), "big")), "-days", str(days),
         "-extfile", str(config), "-extensions", "v3_server", "-out", "server.crt"],
    ]  # fmt: skip
    for argv in steps:
        result = subprocess.run(argv, cwd=directory, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServerError(f"openssl failed: {argv}\n{result.stderr.strip()}")
    with contextlib.suppress(FileNotFoundError):
        (directory / "server.csr").unlink()


PG_BIN_DIRS = ("/usr/lib/postgresql/*/bin",)
PG_READY = "database system is ready to accept connections"


class PostgresFactory(Protocol):
    """The `postgres_factory` fixture: PostgresServer options in, a (started) server out."""

    def __call__(self, *, start: bool = True, **options: Any) -> PostgresServer: ...


def postgres_binaries() -> tuple[str, str] | None:
    """`(initdb, postgres)` of one PostgreSQL installation (the highest version), or None."""
    initdb = find_binary("initdb", PG_BIN_DIRS)
    if initdb is None:
        return None
    sibling = Path(initdb).with_name("postgres")
    if sibling.is_file() and os.access(sibling, os.X_OK):
        return initdb, str(sibling)
    postgres = find_binary("postgres", PG_BIN_DIRS)
    return None if postgres is None else (initdb, postgres)


@dataclass(kw_only=True, eq=False)
class PostgresServer(ServerProcess):
    """A throwaway PostgreSQL cluster: data in `workdir/data`, TCP on 127.0.0.1:`port` only.

    - `initdb` runs on the first start only (`-A trust -E UTF8 --locale=C`); restarts keep the
      data. `pg_hba.conf` is one line, `host all all 127.0.0.1/32 trust`: no password, no
      other address, no unix-socket logins. The socket directory is `workdir/run` (`-k`).
    - When we are root, initdb and the server run as `os_user` (PostgreSQL refuses to run as
      root) through `setpriv`, which execs: the child process *is* the postmaster, so
      `kill()` hits the server and not a wrapper. `workdir` is given to that user (0700) and
      must not live under a root-only directory. When we are not root it runs as us.
    - `fsync` and `synchronous_commit` stay on: a COMMIT that returned is on disk, which is
      what the kill -9 tests rely on. (initdb itself runs with `--no-sync`: its files reach
      the page cache, which a kill -9 does not lose.)
    - `stop()` is a *fast* shutdown (SIGINT: open transactions roll back, clients are
      disconnected, a checkpoint is written). SIGTERM would be a *smart* shutdown that waits
      for every client to leave.
    - `kill()` freezes the postmaster (SIGSTOP, so it cannot fork), then SIGKILLs it and every
      child (backends, checkpointer, WAL writer): the whole server dies at once, as in a
      crash, and no orphaned backend keeps the old shared memory that would stop the next
      postmaster from starting. `restart(crash=True)` then runs WAL crash recovery.
    - The database `database` (default `pledgewatch`) is created on the first start; `url`
      points at it. `create_database` / `drop_database` make more (the `pg_url` fixture
      gives every test a fresh one). Needs psycopg 3, imported lazily.
    """

    name: ClassVar[str] = "postgres"
    _ready_marker: ClassVar[str | None] = PG_READY

    database: str = "pledgewatch"
    superuser: str = "postgres"
    os_user: str = "postgres"
    settings: dict[str, str] = field(default_factory=dict)

    _created: bool = field(default=False, init=False, repr=False)

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.workdir / "run"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{database}"

    def effective_user(self) -> str | None:
        """The OS user the server runs as when we are root; None when we are not root."""
        return self.os_user if os.geteuid() == 0 else None

    def _binaries(self) -> tuple[str, str]:
        found = postgres_binaries()
        if found is None:
            raise ServerError("initdb/postgres not found; run scripts/ensure-servers.sh")
        return found

    def _as_user(self, argv: list[str]) -> list[str]:
        user = self.effective_user()
        if user is None:
            return argv
        setpriv = find_binary("setpriv")
        if setpriv is None:
            raise ServerError("setpriv (util-linux) not found: needed to run PostgreSQL as root")
        return [setpriv, "--reuid", user, "--regid", user, "--init-groups", "--", *argv]

    def _prepare(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.socket_dir.mkdir(exist_ok=True)
        user = self.effective_user()
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (self.workdir, self.socket_dir):
                os.chown(path, entry.pw_uid, entry.pw_gid)
                path.chmod(0o700)
        initdb, _ = self._binaries()
        argv = [initdb, "-D", str(self.data_dir), "-U", self.superuser, "-A", "trust",
                "-E", "UTF8", "--locale=C", "--no-sync"]  # fmt: skip
        result = subprocess.run(
            self._as_user(argv), cwd=self.workdir, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ServerError(f"initdb failed ({result.returncode}):\n{result.stderr.strip()}")
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(f"host all all {self.host}/32 trust\n")
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(hba, entry.pw_uid, entry.pw_gid)

    def _command(self) -> list[str]:
        _, postgres = self._binaries()
        options = {
            "listen_addresses": self.host,
            "fsync": "on",
            "synchronous_commit": "on",
            "unix_socket_permissions": "0700",
            **self.settings,
        }
        argv = [postgres, "-D", str(self.data_dir), "-p", str(self.port),
                "-k", str(self.socket_dir)]  # fmt: skip
        for key, value in options.items():
            argv += ["-c", f"{key}={value}"]
        return self._as_user(argv)

    def start(self) -> None:
        """Start (initdb on the first start) and create `database` once."""
        super().start()
        if not self._created:
            self.create_database(self.database, exist_ok=True)
            self._created = True

    def stop(self) -> None:
        """Fast shutdown (SIGINT); SIGTERM and then SIGKILL only if it hangs."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(self.stop_timeout)
        super().stop()

    def kill(self) -> None:
        """SIGKILL the postmaster and all its children at once (see the class docstring)."""
        if self._proc is None or self._proc.poll() is not None:
            super().kill()
            return
        self._proc.send_signal(signal.SIGSTOP)
        children = _child_pids(self._proc.pid)
        super().kill()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + self.stop_timeout
        while any(_alive(pid) for pid in children):
            if time.monotonic() > deadline:
                raise ServerError(f"postgres children {children} survived SIGKILL")
            time.sleep(0.01)

    def connect(self, database: str | None = None) -> Any:
        """An autocommit psycopg connection to `database` (default: `self.database`)."""
        import psycopg

        return psycopg.connect(self.url_for(database or self.database), autocommit=True)

    def create_database(self, name: str, *, exist_ok: bool = False) -> str:
        """Create database `name` (owned by the superuser); returns its URL."""
        from psycopg import sql

        with self.connect("postgres") as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            elif not exist_ok:
                raise ServerError(f"database {name!r} already exists")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name`, disconnecting anyone still connected to it."""
        from psycopg import sql

        with self.connect("postgres") as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _child_pids(parent: int) -> list[int]:
    """Pids whose parent is `parent` (from /proc/<pid>/stat; Linux only)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after ")".
        fields = text[text.rfind(")") + 2 :].split()
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a zombie holds no memory any more)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2 :].split()[0] != "Z"


@dataclass(frozen=True)
class Connack:
    """What the broker answered to CONNECT."""

    reason_code: ReasonCode
    session_present: bool

    @property
    def ok(self) -> bool:
        return not self.reason_code.is_failure


class MqttProbe:
    """A paho-mqtt 2.x test client (VERSION2 callbacks) that waits for the broker's answers.

    `publish()` returns the PUBACK reason code (MQTT 5: 0x87 Not authorized for an ACL
    refusal; MQTT 3.1.1 PUBACKs carry no reason, paho reports Success). Messages received
    are collected in order in `messages`; `disconnects` counts lost or closed connections
    (paho reconnects by itself while the network thread runs). Client ids are the
    caller's, never random.
    With `session_expiry` > 0 and `clean_start=False` (MQTT 5), or `clean_start=False`
    (MQTT 3.1.1 clean session flag), the broker keeps a persistent session.
    """

    def __init__(
        self,
        server: MosquittoServer,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool = False,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        clean_start: bool = True,
        session_expiry: int = 0,
        timeout: float = 10.0,
    ) -> None:
        self.server = server
        self.protocol = protocol
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        self.timeout = timeout
        self.use_tls = use_tls
        v5 = protocol == mqtt.MQTTv5
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            clean_session=None if v5 else clean_start,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if use_tls:
            self.client.tls_set(ca_certs=str(server.ca_path))
        self.messages: list[mqtt.MQTTMessage] = []
        self.disconnects = 0
        self._cond = threading.Condition()
        self._connack: Connack | None = None
        self._acks: dict[int, ReasonCode] = {}
        self._subacks: dict[int, list[ReasonCode]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, _c: mqtt.Client, _u: object, flags: mqtt.ConnectFlags,
                    reason_code: ReasonCode, _p: Properties | None) -> None:  # fmt: skip
        with self._cond:
            self._connack = Connack(reason_code, bool(flags.session_present))
            self._cond.notify_all()

    def _on_publish(self, _c: mqtt.Client, _u: object, mid: int, reason_code: ReasonCode,
                    _p: Properties) -> None:  # fmt: skip
        with self._cond:
            self._acks[mid] = reason_code
            self._cond.notify_all()

    def _on_subscribe(self, _c: mqtt.Client, _u: object, mid: int, codes: list[ReasonCode],
                      _p: Properties) -> None:  # fmt: skip
        with self._cond:
            self._subacks[mid] = codes
            self._cond.notify_all()

    def _on_disconnect(self, _c: mqtt.Client, _u: object, _f: mqtt.DisconnectFlags,
                       _r: ReasonCode, _p: Properties | None) -> None:  # fmt: skip
        with self._cond:
            self.disconnects += 1
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(message)
            self._cond.notify_all()

    def _wait(self, what: str, ready: Callable[[], bool]) -> None:
        with self._cond:
            if not self._cond.wait_for(ready, self.timeout):
                raise TimeoutError(f"{what} not seen within {self.timeout} s")

    def connect(self) -> Connack:
        """Connect and wait for CONNACK; a refused connection is stopped, not retried."""
        port = self.server.tls_port if self.use_tls else self.server.port
        with self._cond:
            self._connack = None
        if self.protocol == mqtt.MQTTv5:
            properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            properties.SessionExpiryInterval = self.session_expiry
            self.client.connect(
                self.server.host, port, clean_start=self.clean_start, properties=properties
            )
        else:
            self.client.connect(self.server.host, port)
        self.client.loop_start()
        self._wait("CONNACK", lambda: self._connack is not None)
        connack = self._last_connack()
        if not connack.ok:
            self.close()
        return connack

    def _last_connack(self) -> Connack:
        with self._cond:
            if self._connack is None:
                raise TimeoutError("no CONNACK")
            return self._connack

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        """Subscribe and return the SUBACK reason codes."""
        result, mid = self.client.subscribe(topic, qos)
        if mid is None:
            raise ServerError(f"paho could not send SUBSCRIBE for {topic!r}: {result}")
        self._wait(f"SUBACK for {topic!r}", lambda: mid in self._subacks)
        return self._subacks.pop(mid)

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> ReasonCode:
        """Publish and return the PUBACK reason code (QoS 0: paho's own Success)."""
        return self.publish_many(topic, [payload], qos)[0]

    def publish_many(
        self, topic: str, payloads: Sequence[bytes | str], qos: int = 1
    ) -> list[ReasonCode]:
        """Publish all, then wait for every acknowledgement; reason codes in publish order."""
        mids = [self.client.publish(topic, payload, qos).mid for payload in payloads]
        pending = set(mids)
        self._wait(f"{len(mids)} PUBACKs", lambda: pending <= self._acks.keys())
        return [self._acks.pop(mid) for mid in mids]

    def wait_for_messages(self, count: int, timeout: float | None = None) -> list[mqtt.MQTTMessage]:
        """Wait until at least `count` messages arrived; returns a copy of all of them."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: len(self.messages) >= count, timeout or self.timeout
            ):
                raise TimeoutError(f"got {len(self.messages)} messages, want {count}")
            return list(self.messages)

    def wait_quiet(
        self, quiet: float = 0.5, timeout: float | None = None
    ) -> list[mqtt.MQTTMessage]:
        """Wait until no message arrived for `quiet` seconds; returns all messages."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while time.monotonic() < deadline:
            with self._cond:
                seen = len(self.messages)
            time.sleep(quiet)
            with self._cond:
                if len(self.messages) == seen:
                    return list(self.messages)
        raise TimeoutError(f"messages kept arriving for {timeout or self.timeout} s")

    def close(self) -> None:
        """Disconnect (keeping any persistent session) and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


REPO_ROOT = Path(__file__).resolve().parents[1]
# Where scripts/ensure-servers.sh puts anvil (npm package @foundry-rs/anvil, which ships the
# native binary in a per-platform package), then where a global `npm install -g` or foundryup
# would. The npm `anvil` on PATH is a node wrapper that spawns the binary: `anvil_binary()`
# swaps it for the binary itself, so SIGKILL hits the node and not only the wrapper.
ANVIL_DIRS: tuple[str, ...] = (
    str(REPO_ROOT / ".tools/node_modules/@foundry-rs/anvil-*/bin"),
    "/usr/local/lib/node_modules/@foundry-rs/anvil-*/bin",
    "/usr/lib/node_modules/@foundry-rs/anvil-*/bin",
    str(Path.home() / ".foundry/bin"),
)


def anvil_binary(path: str) -> str:
    """The native anvil binary for `path` (as found by `find_binary("anvil", ANVIL_DIRS)`)."""
    real = Path(path).resolve()
    if real.suffix not in {".mjs", ".js", ".cjs"}:
        return str(real)
    # node_modules/@foundry-rs/anvil/bin.mjs -> node_modules/@foundry-rs/anvil-<os>-<arch>/bin
    for candidate in sorted(real.parent.parent.glob("anvil-*/bin/anvil"), reverse=True):
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise ServerError(f"{path} is the npm wrapper, but no native anvil binary sits beside it")


class AnvilFactory(Protocol):
    """The `anvil_factory` fixture: AnvilServer options in, a (started) node out."""

    def __call__(self, *, start: bool = True, **options: Any) -> AnvilServer: ...


@dataclass(kw_only=True, eq=False)
class AnvilServer(ServerProcess):
    """anvil (Foundry's Ethereum dev node) on loopback: JSON-RPC over HTTP on `port`.

    - `block_time`: None = automine (a block per transaction, at once); N = a block every N
      seconds (what confirmations need: with automine no block follows the last one).
    - `chain_id`: None = anvil's default (31337).
    - `accounts`: how many funded, unlocked dev accounts (`eth_accounts`).

    All state is in memory: a restart (even a clean one) starts a fresh chain from block 0,
    so every transaction of the previous run is gone.
    """

    name: ClassVar[str] = "anvil"
    _ready_marker: ClassVar[str | None] = "Listening on"

    block_time: float | None = None
    chain_id: int | None = None
    accounts: int = 3
    binary: str | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ledger_url(self, **options: object) -> str:
        """An `ethereum+http://` ledger URL for this node with `options` as the query."""
        query = "&".join(f"{key}={value}" for key, value in options.items())
        return f"ethereum+{self.rpc_url}" + (f"?{query}" if query else "")

    def _command(self) -> list[str]:
        binary = self.binary or find_binary("anvil", ANVIL_DIRS)
        if binary is None:
            raise ServerError("anvil not found; run scripts/ensure-servers.sh")
        return [
            anvil_binary(binary),
            "--host", self.host,
            "--port", str(self.port),
            "--accounts", str(self.accounts),
            *(["--block-time", f"{self.block_time:g}"] if self.block_time is not None else []),
            *(["--chain-id", str(self.chain_id)] if self.chain_id is not None else []),
        ]  # fmt: skip

    def rpc(self, method: str, params: Sequence[object] = (), timeout: float = 5.0) -> Any:
        """One JSON-RPC call (for test set-up: `anvil_setBalance`, `evm_mine`, ...)."""
        import json
        import urllib.request

        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        request = urllib.request.Request(
            self.rpc_url, body.encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read())
        if "error" in answer:
            raise ServerError(f"anvil {method}: {answer['error']}")
        return answer["result"]


@dataclass(kw_only=True, eq=False)
class VictoriaMetricsServer(ServerProcess):
    """VictoriaMetrics (Debian `victoria-metrics`, single binary) on loopback: HTTP on `port`.

    Takes InfluxDB line protocol on `/api/v2/write` (and `/write`); `bucket` and `org` are
    ignored, a field `f` of measurement `m` becomes the series `m_f` with the tags as labels
    (string fields are stored as 0, booleans as 0/1). Data lives in `workdir/data`, so a
    restart (clean or kill -9) keeps what was flushed. Ready once `/health` answers OK.

    Fresh samples sit in memory for up to ~1 s before queries see them: `force_flush()` makes
    them searchable now; `export()` reads raw samples (`/api/v1/export`, no latency offset).
    """

    name: ClassVar[str] = "victoria-metrics"
    _port_clash_marker: ClassVar[str] = "address already in use"
    binary: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.workdir / "data"

    def _command(self) -> list[str]:
        binary = self.binary or find_binary("victoria-metrics")
        if binary is None:
            raise ServerError("victoria-metrics not found; run scripts/ensure-servers.sh")
        return [
            binary,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.data_dir}",
            "-retentionPeriod=100y",  # tests write timestamps far from now
            "-search.latencyOffset=0s",
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]

    def _is_ready(self) -> bool:
        try:
            return self._get("/health", timeout=0.5).strip() == b"OK"
        except OSError:
            return False

    def _get(self, path: str, timeout: float = 5.0) -> bytes:
        import urllib.request

        with urllib.request.urlopen(self.url + path, timeout=timeout) as response:
            return bytes(response.read())

    def force_flush(self) -> None:
        """Make every sample received so far visible to queries and exports."""
        self._get("/internal/force_flush")

    def export(self, match: str) -> list[dict[str, Any]]:
        """Raw samples of the series matching `match` (a series selector such as
        `{__name__=~"pw_.*"}`), one dict per series: `metric` (labels, `__name__` included),
        `values`, `timestamps` (ms).

        The range is explicit, up to two days ahead: by default the export ends at the
        current *second*, which hides samples stamped in the last few hundred milliseconds.
        """
        import json
        import urllib.parse

        self.force_flush()
        end = int(time.time()) + 2 * 86_400
        query = urllib.parse.urlencode({"match[]": match, "start": 0, "end": end})
        body = self._get("/api/v1/export?" + query)
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


@dataclass(kw_only=True, eq=False)
class InfluxDB1Server(ServerProcess):
    """InfluxDB 1.x (Debian `influxdb`, `influxd`) on loopback: HTTP API on `port`, the
    backup/restore RPC service on `rpc_port` (both random; the RPC one must not stay on its
    default :8088 or parallel runs clash). No auth, usage reporting off, meta/data/WAL in
    `workdir`. Ready once `/ping` answers 204.

    Writes go through the v1 API (`write(db, lines)`: `/write?db=…&precision=ms`); Debian's
    1.6 has no `/api/v2/write`. `query(db, q)` runs InfluxQL through `/query` (epoch=ms).
    """

    name: ClassVar[str] = "influxdb"
    _port_clash_marker: ClassVar[str] = "address already in use"
    binary: str | None = None
    rpc_port: int = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _assign_ports(self) -> None:
        self.port = free_port(self.host)
        self.rpc_port = free_port(self.host)

    def _ports(self) -> list[int]:
        return [self.port]

    def _prepare(self) -> None:
        work = self.workdir
        (work / "influxd.conf").write_text(
            "reporting-disabled = true\n"
            f'bind-address = "{self.host}:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{work / "meta"}"\n'
            f'[data]\n  dir = "{work / "data"}"\n  wal-dir = "{work / "wal"}"\n'
            "  query-log-enabled = false\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            "[subscriber]\n  enabled = false\n"
            f'[http]\n  enabled = true\n  bind-address = "{self.host}:{self.port}"\n'
            "  auth-enabled = false\n  log-enabled = false\n"
        )

    def _command(self) -> list[str]:
        binary = self.binary or find_binary("influxd")
        if binary is None:
            raise ServerError("influxd not found; run scripts/ensure-servers.sh")
        return [binary, "run", "-config", str(self.workdir / "influxd.conf")]

    def _is_ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/ping", timeout=0.5) as response:
                return int(response.status) == 204
        except OSError:
            return False

    def _post(self, path: str, params: dict[str, str], body: bytes) -> bytes:
        import urllib.parse
        import urllib.request

        request = urllib.request.Request(
            f"{self.url}{path}?{urllib.parse.urlencode(params)}", data=body, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return bytes(response.read())

    def create_database(self, db: str) -> None:
        self.query(db, f'CREATE DATABASE "{db}"')

    def write(self, db: str, lines: Sequence[str]) -> None:
        """Write line protocol (ms timestamps) through the v1 `/write`; raises on any non-2xx
        (urllib's HTTPError carries InfluxDB's error text)."""
        self._post("/write", {"db": db, "precision": "ms"}, "\n".join(lines).encode())

    def query(self, db: str, q: str) -> dict[str, Any]:
        """Run InfluxQL `q` (one or more statements) and return the decoded JSON answer;
        statement errors come back in `results[i]["error"]`, not as an exception."""
        import json

        params = {"db": db, "q": q, "epoch": "ms"}
        answer: dict[str, Any] = json.loads(self._post("/query", params, b""))
        return answer
