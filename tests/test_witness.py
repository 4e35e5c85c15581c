"""The bank's witness against the real HTTP service (c2sp.org/tlog-witness add-checkpoint).

Most tests run `WitnessServer` in a thread on a random loopback port; the crash test runs
`pledgewatch witness run` as a child process and kills it with SIGKILL right after a 200.
Every cosignature the witness returns is checked with `verify_cosignature`.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import json
import logging
import os
import sqlite3
import stat
import sys
import threading
import time
from argparse import Namespace
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from anchor import keyfile
from anchor.errors import ConfigError
from anchor.witness import (
    NEVER_COSIGNED,
    SIZE_CONTENT_TYPE,
    CosignResult,
    CosignStatus,
    LogState,
    Witness,
    WitnessServer,
    WitnessState,
    format_add_checkpoint,
    load_config,
    parse_add_checkpoint,
    request_cosignature,
)
from anchor.witness_command import add_arguments
from anchor.witness_command import run as run_command
from pledgewatch import seedfile
from pledgewatch.checkpoint import (
    Checkpoint,
    NoteVerifier,
    SignedNote,
    sign_checkpoint,
    verify_checkpoint,
    verify_cosignature,
    with_signatures,
)
from pledgewatch.errors import PledgewatchError, ValidationError
from pledgewatch.merkle import consistency_proof, root
from pledgewatch.signing import SigningKey

from servers import LOOPBACK, ServerProcess

ORIGIN = "pledgewatch.example/log"
LOG_KEY = SigningKey(hashlib.sha256(b"witness test: log key").digest())
WITNESS_NAME = "bank.example/witness"
LEAVES = [b"entry %d" % i for i in range(80)]
OTHER_LEAVES = [b"forged %d" % i for i in range(80)]
VECTORS = Path(__file__).parent / "vectors" / "checkpoint_external.json"


def note_for(size: int, leaves: Sequence[bytes] = LEAVES, key: SigningKey = LOG_KEY) -> bytes:
    return sign_checkpoint(Checkpoint(ORIGIN, size, root(leaves[:size])), ORIGIN, key).to_bytes()


def proof(size1: int, size2: int, leaves: Sequence[bytes] = LEAVES) -> list[bytes]:
    return [] if size1 == 0 or size1 >= size2 else consistency_proof(leaves, size1, size2)


def write_setup(folder: Path, port: int, *, key: bool = True) -> Path:
    """A witness.toml (and, once, its key) in ``folder``; returns the config path."""
    if key and not (folder / "witness.key").exists():
        keyfile.generate(folder / "witness.key", what="witness key")
    config = folder / "witness.toml"
    config.write_text(
        f"""
[witness]
name = "{WITNESS_NAME}"
key_file = "witness.key"
state_db = "witness.db"
max_body_bytes = 4096

[listen]
host = "{LOOPBACK}"
port = {port}

[[logs]]
origin = "{ORIGIN}"
public_key = "{LOG_KEY.public_key.hex()}"

[[logs]]
origin = "other.example/log"
key_name = "other.example/log-key"
public_key = "{"ab" * 32}"
""",
        encoding="utf-8",
    )
    return config


@dataclass
class Service:
    url: str
    public_key: bytes
    state_db: Path
    server: WitnessServer
    state: WitnessState

    def add(self, old: int, size: int, leaves: Sequence[bytes] = LEAVES) -> CosignResult:
        return request_cosignature(
            self.url, old, proof(old, size, leaves), note_for(size, leaves), 5
        )

    def held(self) -> LogState:
        return self.state.get(ORIGIN)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    config = load_config(write_setup(tmp_path, 0))
    key = keyfile.load(config.key_file)
    state = WitnessState.open(config.state_db)
    witness = Witness(config.name, key, config.logs, state)
    server = WitnessServer((config.host, config.port), witness, config.max_body_bytes)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Service(server.url, key.public_key, config.state_db, server, state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        state.close()


def assert_cosigned(svc: Service, result: CosignResult, size: int) -> int:
    assert result.status is CosignStatus.OK, result
    note = with_signatures(SignedNote.parse(note_for(size)), result.signatures)
    assert verify_checkpoint(note.to_bytes(), ORIGIN, LOG_KEY.public_key).size == size
    return verify_cosignature(note, WITNESS_NAME, svc.public_key)


def post(url: str, body: bytes, path: str = "/add-checkpoint") -> tuple[int, str, bytes]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("POST", path, body=body)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type") or "", response.read()
    finally:
        conn.close()


# ---- the happy path ---------------------------------------------------------------------------


def test_first_checkpoint_then_a_grown_one_are_cosigned(service: Service) -> None:
    before = int(time.time())
    stamp = assert_cosigned(service, service.add(0, 7), 7)
    assert before <= stamp <= int(time.time()) + 1
    assert service.held() == LogState(7, root(LEAVES[:7]))
    assert_cosigned(service, service.add(7, 12), 12)
    assert_cosigned(service, service.add(12, 64), 64)
    assert service.held() == LogState(64, root(LEAVES[:64]))


def test_the_same_checkpoint_again_is_cosigned_again(service: Service) -> None:
    assert_cosigned(service, service.add(0, 5), 5)
    assert_cosigned(service, service.add(5, 5), 5)
    assert service.held().size == 5


def test_an_empty_log_and_then_its_first_entries(service: Service) -> None:
    assert_cosigned(service, service.add(0, 0), 0)
    assert_cosigned(service, service.add(0, 3), 3)


# ---- refusals ---------------------------------------------------------------------------------


def test_stale_old_size_is_409_with_the_current_size(service: Service) -> None:
    assert_cosigned(service, service.add(0, 9), 9)
    result = service.add(0, 12)
    assert (result.status, result.current_size, result.http_status) == (
        CosignStatus.CONFLICT,
        9,
        409,
    )
    assert (result.ok, result.conflict_size) == (False, 9)
    status, content_type, body = post(
        service.url, format_add_checkpoint(3, proof(3, 12), note_for(12))
    )
    assert (status, content_type, body) == (409, SIZE_CONTENT_TYPE, b"9\n")
    assert_cosigned(service, service.add(result.current_size or 0, 12), 12)


def test_a_rewound_log_is_refused(service: Service) -> None:
    assert_cosigned(service, service.add(0, 10), 10)
    rewound = service.add(10, 6)  # old (what the witness holds) > the checkpoint's size
    assert (rewound.status, rewound.http_status) == (CosignStatus.ERROR, 400)
    assert "exceeds checkpoint size" in rewound.message
    behind = service.add(6, 6)  # claims the witness is at 6: it is not
    assert (behind.status, behind.current_size) == (CosignStatus.CONFLICT, 10)
    assert service.held().size == 10


def test_a_fork_at_the_same_size_is_409_and_kept(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    assert_cosigned(service, service.add(0, 10), 10)
    with caplog.at_level(logging.CRITICAL, logger="anchor.witness"):
        forked = service.add(10, 10, OTHER_LEAVES)
    assert (forked.status, forked.http_status) == (CosignStatus.ERROR, 409)
    assert "fork" in forked.message
    assert any("FORK" in r.getMessage() for r in caplog.records)
    assert service.held() == LogState(10, root(LEAVES[:10]))
    assert service.state.refusal_count() == 1


def test_a_bigger_size_whose_proof_does_not_match_is_422(service: Service) -> None:
    assert_cosigned(service, service.add(0, 10), 10)
    # a log that rewrote its history: the new tree does not extend the cosigned one
    bad = request_cosignature(
        service.url, 10, proof(10, 20, OTHER_LEAVES), note_for(20, OTHER_LEAVES), 5
    )
    assert (bad.status, bad.http_status) == (CosignStatus.ERROR, 422)
    # the right new root with a proof that is one hash short
    short = request_cosignature(service.url, 10, proof(10, 20)[:-1], note_for(20), 5)
    assert short.http_status == 422
    tampered = [bytes(32), *proof(10, 20)[1:]]
    assert request_cosignature(service.url, 10, tampered, note_for(20), 5).http_status == 422
    assert service.held().size == 10
    assert service.state.refusal_count() == 3


def test_a_proof_from_size_zero_is_422(service: Service) -> None:
    result = request_cosignature(service.url, 0, [bytes(32)], note_for(4), 5)
    assert result.http_status == 422
    assert service.held() == NEVER_COSIGNED


def test_unknown_origin_is_404(service: Service) -> None:
    note = sign_checkpoint(Checkpoint("stranger.example/log", 1, bytes(32)), ORIGIN, LOG_KEY)
    result = request_cosignature(service.url, 0, [], note.to_bytes(), 5)
    assert (result.status, result.http_status) == (CosignStatus.ERROR, 404)


def test_a_bad_signature_is_403(service: Service) -> None:
    intruder = SigningKey(hashlib.sha256(b"intruder").digest())
    wrong_key = request_cosignature(service.url, 0, [], note_for(3, key=intruder), 5)
    assert wrong_key.http_status == 403
    cp = Checkpoint(ORIGIN, 3, root(LEAVES[:3]))
    wrong_name = sign_checkpoint(cp, "someone.else/log", LOG_KEY).to_bytes()
    assert request_cosignature(service.url, 0, [], wrong_name, 5).http_status == 403
    good = SignedNote.parse(note_for(3))
    (sig,) = good.signatures
    flipped = bytearray(sig.signature)
    flipped[0] ^= 1
    forged = SignedNote(good.body, (type(sig)(sig.name, sig.key_hash, bytes(flipped)),))
    assert request_cosignature(service.url, 0, [], forged.to_bytes(), 5).http_status == 403
    assert service.held() == NEVER_COSIGNED


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        b"old 1\n",  # no blank line, no note
        b"old 01\n\n",
        b"old -1\n\n",
        b"new 1\n\n",
        b"old 0\nnot base64\n\n",
        b"old 0\nAAAA\n\n",  # 3 bytes, not a hash
        b"old 0\n" + b"A" * 43 + b"=\n" * 64 + b"\n",  # 64 proof lines
        b"old 0\n\nnot a note\n",
        b"old 0\n\nnot\na checkpoint\n\n\xe2\x80\x94 x AAAAAAA=\n",
    ],
)
def test_malformed_requests_are_400(service: Service, body: bytes) -> None:
    status, _, _ = post(service.url, body)
    assert status == 400


def test_old_size_above_the_checkpoint_size_is_400(service: Service) -> None:
    status, _, _ = post(service.url, format_add_checkpoint(5, [], note_for(4)))
    assert status == 400


def test_http_edges(service: Service) -> None:
    assert post(service.url, b"", path="/elsewhere")[0] == 404
    host, port = service.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/add-checkpoint")
    response = conn.getresponse()
    assert (response.status, response.getheader("Allow")) == (405, "POST")
    response.read()
    conn.close()
    assert post(service.url, b"x" * 5000)[0] == 413
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.putrequest("POST", "/add-checkpoint")
    conn.endheaders()
    assert conn.getresponse().status == 411
    conn.close()


def test_keep_alive_serves_several_requests_on_one_connection(service: Service) -> None:
    host, port = service.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for old, size in ((0, 2), (2, 4), (4, 8)):
            conn.request(
                "POST",
                "/add-checkpoint",
                format_add_checkpoint(old, proof(old, size), note_for(size)),
            )
            response = conn.getresponse()
            assert response.status == 200, response.read()
            response.read()
    finally:
        conn.close()
    assert service.held().size == 8


# ---- concurrency and durability ---------------------------------------------------------------


def test_concurrent_add_checkpoint_requests_never_roll_back(service: Service) -> None:
    accepted: list[tuple[int, int, int]] = []
    lock = threading.Lock()
    errors: list[str] = []

    def climber(offset: int) -> None:
        believed = 0
        for target in range(offset + 1, 61, 8):
            while believed < target:
                result = service.add(believed, target)
                if result.status is CosignStatus.OK:
                    stamp = assert_cosigned(service, result, target)
                    with lock:
                        accepted.append((believed, target, stamp))
                    believed = target
                elif result.status is CosignStatus.CONFLICT and result.current_size is not None:
                    believed = result.current_size
                    if believed >= target:
                        break
                else:
                    errors.append(f"{believed}->{target}: {result}")
                    return

    threads = [threading.Thread(target=climber, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    # the accepted transitions form one chain from 0: no size was ever lost or reused
    chain = sorted((old, new) for old, new, _ in accepted)
    assert len({old for old, _ in chain}) == len(chain)
    position = 0
    for old, new in chain:
        assert old == position and new > old
        position = new
    assert service.held() == LogState(position, root(LEAVES[:position]))
    assert position == 60


def test_compare_and_set_refuses_a_stale_expectation(tmp_path: Path) -> None:
    """Two processes sharing one state file: the loser of the race gets the fresh state."""
    first = WitnessState.open(tmp_path / "w.db")
    second = WitnessState.open(tmp_path / "w.db")
    try:
        five = LogState(5, root(LEAVES[:5]))
        assert first.compare_and_set(ORIGIN, NEVER_COSIGNED, five, b"n", 1) is None
        seven = LogState(7, root(LEAVES[:7]))
        assert second.compare_and_set(ORIGIN, NEVER_COSIGNED, seven, b"n", 2) == five
        assert second.get(ORIGIN) == five
    finally:
        first.close()
        second.close()


class WitnessProcess(ServerProcess):
    """`pledgewatch witness run` as a child process."""

    name: ClassVar[str] = "witness"
    _ready_marker: ClassVar[str | None] = "witness listening on"

    def _prepare(self) -> None:
        write_setup(self.workdir, self.port)

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "pledgewatch.cli",
            "witness",
            "run",
            "--config",
            str(self.workdir / "witness.toml"),
        ]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def test_state_survives_sigkill_right_after_a_200() -> None:
    with WitnessProcess() as proc:
        assert isinstance(proc, WitnessProcess)
        public_key = keyfile.load(proc.workdir / "witness.key").public_key
        result = request_cosignature(proc.url, 0, [], note_for(5), 5)
        proc.kill()  # SIGKILL: no chance to flush anything after the answer
        assert result.status is CosignStatus.OK
        note = with_signatures(SignedNote.parse(note_for(5)), result.signatures)
        verify_cosignature(note, WITNESS_NAME, public_key)
        proc.start()
        after = request_cosignature(proc.url, 0, [], note_for(9), 5)
        assert (after.status, after.current_size) == (CosignStatus.CONFLICT, 5)
        grown = request_cosignature(proc.url, 5, proof(5, 9), note_for(9), 5)
        assert grown.status is CosignStatus.OK
        proc.kill()
        proc.start()
        assert request_cosignature(proc.url, 0, [], note_for(9), 5).current_size == 9
        proc.stop()  # SIGTERM: a clean shutdown
        assert "witness stopped" in proc.log_since_start()


# ---- the client, the request format, config, keys, CLI ----------------------------------------


def test_client_reports_an_unreachable_witness() -> None:
    with socket_closed_port() as port:
        result = request_cosignature(f"http://{LOOPBACK}:{port}", 0, [], note_for(1), 1)
    assert (result.status, result.http_status) == (CosignStatus.ERROR, None)
    with pytest.raises(ValidationError, match="http"):
        request_cosignature("file:///etc/passwd", 0, [], note_for(1), 1)


class socket_closed_port:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind((LOOPBACK, 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_the_spec_example_request_parses_and_round_trips() -> None:
    example = json.loads(VECTORS.read_text(encoding="utf-8"))["witness_request"]
    body = example["body"].encode()
    request = parse_add_checkpoint(body)
    assert (request.old_size, len(request.proof)) == (example["old_size"], example["proof_length"])
    note = SignedNote.parse(request.note)
    assert Checkpoint.parse(note.body).size == 20852163
    assert len(note.signatures) == 2
    assert format_add_checkpoint(request.old_size, request.proof, request.note) == body


def test_config_reports_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        """
[witness]
name = "has space"
key_file = "k"
typo = 1
[listen]
port = 70000
[[logs]]
origin = "a.example/log"
public_key = "zz"
[[logs]]
origin = "a.example/log"
public_key = "00"
""",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    text = "\n".join(info.value.problems)
    for fragment in (
        "witness.name",
        "witness.typo",
        "listen.port",
        "logs[0].public_key",
        "logs[1].origin",
        "logs[1].public_key",
    ):
        assert fragment in text
    empty = tmp_path / "empty.toml"
    empty.write_text('[witness]\nname = "w.example"\nkey_file = "k"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="at least one"):
        load_config(empty)


def test_key_file_is_0600_and_refused_when_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "w.key"
    key = keyfile.generate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().splitlines()[0] == seedfile.HEADER
    assert keyfile.load(path).public_key == key.public_key
    with pytest.raises(keyfile.KeyFileError, match="already exists"):
        keyfile.generate(path)
    os.chmod(path, 0o644)
    with pytest.raises(keyfile.KeyFileError, match="mode 644"):
        keyfile.load(path)
    os.chmod(path, 0o600)
    path.write_text("pledgewatch-ed25519-seed-v1\nnot hex\n")
    with pytest.raises(keyfile.KeyFileError, match="64 lowercase hex"):
        keyfile.load(path)


def cli(*argv: str) -> tuple[int, str, str]:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args: Namespace = parser.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    return run_command(args, out, err), out.getvalue(), err.getvalue()


def test_keygen_and_show(tmp_path: Path, service: Service) -> None:
    code, out, _ = cli("keygen", "--key", str(tmp_path / "k2"), "--name", WITNESS_NAME)
    assert code == 0
    vkey = next(line.split()[1] for line in out.splitlines() if line.startswith("vkey:"))
    verifier = NoteVerifier.from_vkey(vkey)
    assert verifier.public_key == keyfile.load(tmp_path / "k2").public_key
    assert vkey.split("+")[1] == verifier.key_hash.hex()
    assert cli("keygen", "--key", str(tmp_path / "k2"), "--name", WITNESS_NAME)[0] == 2
    assert cli("keygen", "--key", str(tmp_path / "k3"), "--name", "bad name")[0] == 2
    assert not (tmp_path / "k3").exists()
    assert_cosigned(service, service.add(0, 4), 4)
    code, out, _ = cli("show", "--config", str(tmp_path / "witness.toml"))
    assert code == 0
    assert f"log {ORIGIN}: size 4" in out
    assert "log other.example/log: never cosigned" in out


def test_state_file_is_sqlite_with_full_sync(service: Service) -> None:
    assert_cosigned(service, service.add(0, 2), 2)
    conn = sqlite3.connect(service.state_db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        (size, blob) = conn.execute(
            "SELECT size, note FROM logs WHERE origin = ?", (ORIGIN,)
        ).fetchone()
    finally:
        conn.close()
    assert size == 2
    assert bytes(blob) == note_for(2)


def test_witness_rules_without_http_cosign_a_long_history(tmp_path: Path) -> None:
    """The rules alone (no HTTP): an append-only history is cosigned step by step."""
    state = WitnessState.open(tmp_path / "w.db")
    key = SigningKey(hashlib.sha256(b"plain witness").digest())
    config = load_config(write_setup(tmp_path, 0))
    witness = Witness(WITNESS_NAME, key, config.logs, state, clock=lambda: 1_700_000_000.5)
    try:
        old = 0
        for size in (1, 2, 3, 5, 8, 13, 21, 34, 55, 79):
            body = format_add_checkpoint(old, proof(old, size), note_for(size))
            answer = witness.add_checkpoint(body)
            assert answer.status == 200, answer.body
            cosigned = SignedNote.parse(SignedNote.parse(note_for(size)).body + b"\n" + answer.body)
            assert verify_cosignature(cosigned, WITNESS_NAME, key.public_key) == 1_700_000_000
            old = size
    finally:
        state.close()
    with pytest.raises(PledgewatchError):
        parse_add_checkpoint(b"old 1")


def test_a_state_failure_is_500_and_nothing_is_cosigned(service: Service) -> None:
    assert_cosigned(service, service.add(0, 3), 3)
    service.state.close()  # the database is gone: the witness must not cosign blind
    result = service.add(3, 6)
    assert (result.status, result.http_status, result.signatures) == (CosignStatus.ERROR, 500, ())
