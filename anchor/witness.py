"""The bank's witness: c2sp.org/tlog-witness ``add-checkpoint`` over HTTP, and its client.

The lender runs this small service with its own Ed25519 key. The anchor posts each new signed
checkpoint with a consistency proof from the last size the witness cosigned; the witness
checks that the log only grew, remembers the new (size, root) durably, and answers with a
``cosignature/v1`` line (see ``pledgewatch.checkpoint``). A log that rewrites history cannot
get a cosignature for it, and a fork (same size, another root) is logged and kept as evidence.

Request body (``POST <prefix>/add-checkpoint``)::

    "old " <decimal size, no leading zeros> \\n
    <base64 of one 32-byte consistency-proof hash> \\n      (0 to 63 lines)
    \\n
    <the signed checkpoint note>

Answers, in the order the spec checks them:

==========  ================================================================================
status      when
==========  ================================================================================
400         malformed request or checkpoint; or ``old`` > the checkpoint's size
404         the checkpoint's origin is not a log this witness is configured for
403         no valid signature by the configured log key
409         ``old`` is not the size the witness last cosigned for that origin: the body is
            that size and ``\\n``, Content-Type ``text/x.tlog.size``
409         same size as the one cosigned, different root: a fork (logged, kept as evidence)
422         the consistency proof does not verify (logged, kept as evidence)
200         the new (size, root) is stored (committed and fsynced), body = cosignature line(s)
==========  ================================================================================

State is one SQLite file (WAL, ``synchronous=FULL``). The check of ``old`` and the write of
the new size happen in one ``BEGIN IMMEDIATE`` transaction that re-reads the row (compare and
set), under a per-origin lock: two requests, threads or even two processes sharing the file
cannot roll the size back (the race the spec warns about), and nothing is answered before
the commit is on disk.
"""

from __future__ import annotations

import enum
import logging
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast

from anchor.errors import ConfigError, StoreError
from pledgewatch.checkpoint import (
    Checkpoint,
    NoteSignature,
    SignedNote,
    b64decode,
    b64encode,
    check_key_name,
    cosign,
    parse_signature_lines,
    verify_note,
)
from pledgewatch.errors import PledgewatchError, ProofError, ValidationError
from pledgewatch.merkle import EMPTY_ROOT, verify_consistency
from pledgewatch.signing import SigningKey
from pledgewatch.tomlconf import Fields, parse_file

log = logging.getLogger(__name__)

ADD_CHECKPOINT_PATH = "/add-checkpoint"
SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
MAX_PROOF_LINES = 63
STATE_FORMAT = "pledgewatch-witness-state-v1"
DEFAULT_MAX_BODY = 64 * 1024
MAX_RESPONSE_BYTES = 64 * 1024
_OLD_LINE = re.compile(rb"old (0|[1-9][0-9]{0,18})")
_SIZE_BODY = re.compile(rb"(0|[1-9][0-9]{0,18})\n")


# ---- configuration ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WitnessedLog:
    """A log this witness cosigns for: its origin line and its Ed25519 note key."""

    origin: str
    key_name: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class WitnessConfig:
    name: str
    key_file: Path
    state_db: Path
    host: str
    port: int
    max_body_bytes: int
    logs: Mapping[str, WitnessedLog]


def load_config(path: Path) -> WitnessConfig:
    """Read ``witness.toml``; every problem is reported in one ``ConfigError``."""
    config, problems = parse_file(path, parse_config)
    if config is None:
        raise ConfigError(str(path), problems)
    return config


def parse_config(raw: dict[str, object], base: Path, problems: list[str]) -> WitnessConfig:
    """Relative paths are relative to ``base`` (the config file's folder)."""
    root = Fields(raw, "", problems)
    w = root.table("witness")
    name = _key_name(w, "name")
    key_file = base / w.text("key_file")
    state_db = base / w.text("state_db", "witness.db")
    max_body = w.integer("max_body_bytes", DEFAULT_MAX_BODY, low=1024, high=1024 * 1024)
    w.finish()
    listen = root.table("listen", required=False)
    host = listen.text("host", "127.0.0.1")
    port = listen.integer("port", 8480, low=0, high=65535)
    listen.finish()
    logs: dict[str, WitnessedLog] = {}
    for f in root.tables("logs"):
        entry = _log_entry(f)
        if entry.origin in logs:
            problems.append(f"{f.path}.origin: {entry.origin!r} appears twice")
        logs[entry.origin] = entry
    if not logs:
        problems.append("logs: want at least one [[logs]] table (origin, public_key)")
    root.finish()
    return WitnessConfig(name, key_file, state_db, host, port, max_body, logs)


def _key_name(f: Fields, key: str, default: str | None = None) -> str:
    value = f.text(key, default)
    if value:
        try:
            check_key_name(value)
        except ValidationError as exc:
            f.problems.append(f"{f.path}.{key}: {exc}")
    return value


def _log_entry(f: Fields) -> WitnessedLog:
    origin = f.text("origin")
    try:
        Checkpoint(origin, 0, EMPTY_ROOT)
    except ValidationError as exc:
        if not any(p.startswith(f"{f.path}.origin:") for p in f.problems):
            f.problems.append(f"{f.path}.origin: {exc}")
    key_name = _key_name(f, "key_name", origin or "-")
    key = f.public_key("public_key", what="the log's Ed25519 key") or b""
    f.finish()
    return WitnessedLog(origin, key_name, key)


# ---- the request ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    note: bytes


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], note: bytes) -> bytes:
    """The request body: ``old N\\n``, one base64 hash per line, a blank line, the note."""
    if not isinstance(old_size, int) or not 0 <= old_size < 2**63:
        raise ValidationError(f"old size: got {old_size!r}, want 0..2**63-1")
    if len(proof) > MAX_PROOF_LINES or any(len(h) != 32 for h in proof):
        raise ValidationError(f"proof: want at most {MAX_PROOF_LINES} hashes of 32 bytes")
    lines = b"".join(b64encode(h).encode() + b"\n" for h in proof)
    return b"old %d\n" % old_size + lines + b"\n" + note


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Parse a request body; raises ``PledgewatchError`` (a 400) if it is malformed."""
    first, sep, rest = body.partition(b"\n")
    match = _OLD_LINE.fullmatch(first)
    if not sep or match is None:
        raise ValidationError(f"first line: want 'old <size>', got {first[:40]!r}")
    proof: list[bytes] = []
    while True:
        line, sep, rest = rest.partition(b"\n")
        if not sep:
            raise ValidationError("want a blank line between the proof and the checkpoint")
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise ValidationError(f"more than {MAX_PROOF_LINES} consistency proof lines")
        text = line.decode("ascii", errors="replace")
        digest = b64decode(text, f"proof line {len(proof) + 1}")
        if len(digest) != 32:
            raise ValidationError(f"proof line {len(proof) + 1}: got {len(digest)} bytes, want 32")
        proof.append(digest)
    return AddCheckpoint(int(match.group(1)), tuple(proof), rest)


# ---- durable state ----------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (
    origin TEXT PRIMARY KEY,
    size INTEGER NOT NULL CHECK (size >= 0),
    root BLOB NOT NULL CHECK (length(root) = 32),
    note BLOB NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refusals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    reason TEXT NOT NULL,
    old_size INTEGER NOT NULL,
    proof BLOB NOT NULL,
    note BLOB NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class LogState:
    """What the witness last cosigned for an origin; (0, EMPTY_ROOT) if never."""

    size: int
    root: bytes


NEVER_COSIGNED = LogState(0, EMPTY_ROOT)


class WitnessState:
    """The witness's SQLite file: latest cosigned checkpoint per origin, and refusals."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> WitnessState:
        try:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (STATE_FORMAT,))
            (found,) = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"witness state {path}: {exc}") from None
        if found != STATE_FORMAT:
            conn.close()
            raise StoreError(f"witness state {path}: format {found!r}, want {STATE_FORMAT!r}")
        return cls(conn)

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return list(self._conn.execute(sql, args).fetchall())
            except sqlite3.Error as exc:
                raise StoreError(f"witness state: cannot read: {exc}") from None

    def get(self, origin: str) -> LogState:
        rows = self._rows("SELECT size, root FROM logs WHERE origin = ?", (origin,))
        if not rows:
            return NEVER_COSIGNED
        size, root = rows[0]
        return LogState(cast(int, size), bytes(cast(bytes, root)))

    def compare_and_set(
        self, origin: str, expected: LogState, new: LogState, note: bytes, now_ms: int
    ) -> LogState | None:
        """Store ``new`` if the row still holds ``expected``; else return what it holds.

        One IMMEDIATE transaction: the write lock is taken before the re-read, and COMMIT
        returns only once the WAL is fsynced (synchronous=FULL).
        """
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    row = self._conn.execute(
                        "SELECT size, root FROM logs WHERE origin = ?", (origin,)
                    ).fetchone()
                    current = NEVER_COSIGNED if row is None else LogState(row[0], bytes(row[1]))
                    if current != expected:
                        self._conn.execute("ROLLBACK")
                        return current
                    self._conn.execute(
                        "INSERT INTO logs VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO UPDATE"
                        " SET size = excluded.size, root = excluded.root, note = excluded.note,"
                        " updated_ms = excluded.updated_ms",
                        (origin, new.size, new.root, note, now_ms),
                    )
                    self._conn.execute("COMMIT")
                except BaseException:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise StoreError(f"witness state: cannot store {origin!r}: {exc}") from None
        return None

    def record_refusal(
        self, origin: str, status: int, reason: str, request: AddCheckpoint, now_ms: int
    ) -> None:
        """Keep a refused but log-signed request: it may prove the log misbehaved."""
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO refusals (origin, received_ms, status, reason, old_size, proof,"
                    " note) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        origin,
                        now_ms,
                        status,
                        reason,
                        request.old_size,
                        b"".join(request.proof),
                        request.note,
                    ),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"witness state: cannot record a refusal: {exc}") from None

    def logs(self) -> dict[str, tuple[LogState, int]]:
        """Every origin's state and the time (ms) it was last updated."""
        rows = self._rows("SELECT origin, size, root, updated_ms FROM logs")
        return {
            cast(str, origin): (LogState(cast(int, size), bytes(cast(bytes, root))), cast(int, ms))
            for origin, size, root, ms in rows
        }

    def refusal_count(self) -> int:
        ((count,),) = self._rows("SELECT COUNT(*) FROM refusals")
        return cast(int, count)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# ---- the rules --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    status: HTTPStatus
    body: bytes
    content_type: str = TEXT_CONTENT_TYPE


class _Refused(Exception):
    def __init__(self, status: HTTPStatus, message: str, *, size: int | None = None) -> None:
        super().__init__(message)
        if size is None:
            self.answer = Answer(status, message.encode() + b"\n")
        else:
            self.answer = Answer(status, b"%d\n" % size, SIZE_CONTENT_TYPE)


class Witness:
    """The add-checkpoint rules of c2sp.org/tlog-witness. Thread-safe; no I/O but ``state``."""

    def __init__(
        self,
        name: str,
        key: SigningKey,
        logs: Mapping[str, WitnessedLog],
        state: WitnessState,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self._key = key
        self._logs = dict(logs)
        self._state = state
        self._clock = clock
        self._locks = {origin: threading.Lock() for origin in logs}

    def add_checkpoint(self, body: bytes) -> Answer:
        """Apply the rules to one request body; the answer to send (never raises for input)."""
        try:
            request, checkpoint, note = self._admit(body)
            with self._locks[checkpoint.origin]:
                self._check_and_store(request, checkpoint)
        except _Refused as refused:
            return refused.answer
        except StoreError as exc:  # nothing was stored, so nothing may be cosigned
            log.error("witness state failed: %s", exc)
            return Answer(HTTPStatus.INTERNAL_SERVER_ERROR, b"witness state unavailable\n")
        line = cosign(note.body, self.name, self._key, int(self._clock())).line()
        log.info("cosigned %s at size %d", checkpoint.origin, checkpoint.size)
        return Answer(HTTPStatus.OK, line)

    def _admit(self, body: bytes) -> tuple[AddCheckpoint, Checkpoint, SignedNote]:
        """400 malformed, 404 unknown origin, 403 bad signature, 400 old > size."""
        try:
            request = parse_add_checkpoint(body)
            note = SignedNote.parse(request.note)
            checkpoint = Checkpoint.parse(note.body)
        except PledgewatchError as exc:
            raise _Refused(HTTPStatus.BAD_REQUEST, f"malformed request: {exc}") from None
        entry = self._logs.get(checkpoint.origin)
        if entry is None:
            raise _Refused(HTTPStatus.NOT_FOUND, f"unknown origin {checkpoint.origin!r}")
        try:
            verify_note(note, entry.key_name, entry.public_key)
        except PledgewatchError as exc:
            raise _Refused(HTTPStatus.FORBIDDEN, f"checkpoint signature: {exc}") from None
        if request.old_size > checkpoint.size:
            log.warning(
                "%s: refused checkpoint of size %d below old size %d (rewound log?)",
                checkpoint.origin,
                checkpoint.size,
                request.old_size,
            )
            raise _Refused(
                HTTPStatus.BAD_REQUEST,
                f"old size {request.old_size} exceeds checkpoint size {checkpoint.size}",
            )
        return request, checkpoint, note

    def _check_and_store(self, request: AddCheckpoint, checkpoint: Checkpoint) -> None:
        """409 stale old size, 409 fork, 422 bad proof; else persist (under the origin lock)."""
        origin = checkpoint.origin
        current = self._state.get(origin)
        if request.old_size != current.size:
            raise _Refused(HTTPStatus.CONFLICT, "stale old size", size=current.size)
        if checkpoint.size == current.size and checkpoint.root != current.root:
            self._evidence(origin, request, HTTPStatus.CONFLICT, "fork: same size, different root")
            log.critical(
                "FORK of log %s at size %d: cosigned root %s, now offered root %s",
                origin,
                current.size,
                current.root.hex(),
                checkpoint.root.hex(),
            )
            raise _Refused(HTTPStatus.CONFLICT, f"fork: size {current.size} has another root")
        try:
            if current.size == 0 and checkpoint.size > 0:
                if request.proof:
                    raise ProofError("consistency proof from size 0 must be empty")
            else:
                verify_consistency(
                    current.size, checkpoint.size, request.proof, current.root, checkpoint.root
                )
        except ProofError as exc:
            self._evidence(origin, request, HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
            log.error(
                "%s: consistency proof %d -> %d refused: %s",
                origin,
                current.size,
                checkpoint.size,
                exc,
            )
            raise _Refused(HTTPStatus.UNPROCESSABLE_ENTITY, f"consistency proof: {exc}") from None
        new = LogState(checkpoint.size, checkpoint.root)
        now_ms = int(self._clock() * 1000)
        raced = self._state.compare_and_set(origin, current, new, request.note, now_ms)
        if raced is not None:  # another process sharing the state file moved first
            raise _Refused(HTTPStatus.CONFLICT, "stale old size", size=raced.size)

    def _evidence(
        self, origin: str, request: AddCheckpoint, status: HTTPStatus, reason: str
    ) -> None:
        now_ms = int(self._clock() * 1000)
        self._state.record_refusal(origin, int(status), reason, request, now_ms)


# ---- HTTP -------------------------------------------------------------------------------------


class WitnessServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` serving one ``Witness`` at ``/add-checkpoint``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], witness: Witness, max_body_bytes: int) -> None:
        self.witness = witness
        self.max_body_bytes = max_body_bytes
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def handle_error(self, request: object, client_address: object) -> None:
        log.exception("witness: error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the spec recommends
    server_version = "pledgewatch-witness/1"
    timeout = 30  # seconds a connection may idle or trickle before it is dropped

    def do_POST(self) -> None:
        server = cast(WitnessServer, self.server)
        if self.path != ADD_CHECKPOINT_PATH:
            self._send(Answer(HTTPStatus.NOT_FOUND, b"not found\n"))
            return
        length = self.headers.get("Content-Length", "")
        if self.headers.get("Transfer-Encoding") or not length.isdigit():
            self.close_connection = True
            self._send(Answer(HTTPStatus.LENGTH_REQUIRED, b"want a Content-Length\n"))
            return
        if int(length) > server.max_body_bytes:
            self.close_connection = True
            self._send(Answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"request body too large\n"))
            return
        try:
            body = self.rfile.read(int(length))
        except OSError:  # includes the socket timeout of a client that stopped sending
            body = b""
        if len(body) != int(length):
            self.close_connection = True
            return
        self._send(server.witness.add_checkpoint(body))

    def do_GET(self) -> None:
        self._send(Answer(HTTPStatus.METHOD_NOT_ALLOWED, b"use POST /add-checkpoint\n"))

    do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        if answer.status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "POST")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


# ---- the client the anchor uses ---------------------------------------------------------------


class CosignStatus(enum.Enum):
    OK = "ok"
    CONFLICT = "conflict"  # the witness holds another size: retry from ``current_size``
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class CosignResult:
    """OK with ``signatures``; CONFLICT with ``current_size``; ERROR with ``http_status`` (None
    when there was no answer) and ``message``."""

    status: CosignStatus
    signatures: tuple[NoteSignature, ...] = ()
    current_size: int | None = None
    http_status: int | None = None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is CosignStatus.OK

    @property
    def conflict_size(self) -> int | None:
        """The size the witness holds, when it answered 409 with it; else ``None``."""
        return self.current_size if self.status is CosignStatus.CONFLICT else None


def request_cosignature(
    url: str, old_size: int, proof: Sequence[bytes], note_bytes: bytes, timeout: float
) -> CosignResult:
    """POST ``note_bytes`` to ``<url>/add-checkpoint`` (``url`` is the submission prefix).

    Returns OK with the parsed signature lines (not yet verified: the caller checks them
    with ``verify_cosignature`` against the witness key it trusts), CONFLICT with the size
    the witness holds, or ERROR with the HTTP status (``None`` if no answer) and a message.
    Raises ``ValidationError`` only for bad arguments.
    """
    if not url.startswith(("http://", "https://")):
        raise ValidationError(f"witness url: got {url!r}, want http:// or https://")
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url.rstrip("/") + ADD_CHECKPOINT_PATH,
        data=format_add_checkpoint(old_size, proof, note_bytes),
        method="POST",
        headers={"Content-Type": TEXT_CONTENT_TYPE},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_RESPONSE_BYTES)
    except urllib.error.HTTPError as exc:
        return _refusal(exc)
    except (urllib.error.URLError, OSError) as exc:
        return CosignResult(CosignStatus.ERROR, message=f"no answer from {url}: {exc}")
    try:
        return CosignResult(CosignStatus.OK, parse_signature_lines(body), http_status=200)
    except PledgewatchError as exc:
        return CosignResult(CosignStatus.ERROR, http_status=200, message=f"bad answer: {exc}")


def _refusal(exc: urllib.error.HTTPError) -> CosignResult:
    try:
        body = exc.read(MAX_RESPONSE_BYTES)
    except OSError:
        body = b""
    finally:
        exc.close()
    content_type = (exc.headers.get("Content-Type") or "").split(";")[0].strip()
    match = _SIZE_BODY.fullmatch(body)
    if exc.code == HTTPStatus.CONFLICT and content_type == SIZE_CONTENT_TYPE and match:
        return CosignResult(
            CosignStatus.CONFLICT, current_size=int(match.group(1)), http_status=exc.code
        )
    text = body.decode("utf-8", errors="replace").strip()
    return CosignResult(CosignStatus.ERROR, http_status=exc.code, message=text)
