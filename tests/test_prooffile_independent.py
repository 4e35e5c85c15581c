"""An auditor's proof-file verifier written from docs/PROTOCOL.md section 11 (and the C2SP
checkpoint, signed-note and cosignature specs it cites) with hashlib, json, base64 and PyNaCl.

This module must not import pledgewatch (a test below checks with ``ast``): it shows the
document is enough to check a proof file without any of our code. The good proof file comes
from our builder, run in a separate interpreter (``python tests/test_prooffile.py``).
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import nacl.exceptions
import nacl.signing
import pytest

HERE = Path(__file__).resolve()
EVENT_DOMAIN = b"pledgewatch/event/v1\n"
KEY_ID_DOMAIN = b"pledgewatch/key-id/v1\n"
LEDGER_DOMAIN = b"pledgewatch/ledger-anchor/v1\n"
SQLITE_ENTRY_DOMAIN = b"pledgewatch/sqlite-ledger/v1\n"
HEX = set("0123456789abcdef")


class Rejected(Exception):
    def __init__(self, check: str, why: str) -> None:
        super().__init__(f"{check}: {why}")
        self.check = check


def canon(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def strict_decode(data: bytes) -> dict:  # type: ignore[type-arg]
    def pairs(items: list) -> dict:  # type: ignore[type-arg]
        if len({k for k, _ in items}) != len(items):
            raise Rejected("format", "duplicate key")
        return dict(items)

    def no_float(text: str) -> None:
        raise Rejected("format", "float")

    if len(data) > 1 << 20:
        raise Rejected("format", "over 1 MiB")
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_float=no_float)
    except ValueError as exc:
        raise Rejected("format", str(exc)) from None
    if not isinstance(value, dict) or canon(value) != data:
        raise Rejected("format", "not a canonical object")
    return value


def hashes(items: object) -> list[bytes]:
    if not isinstance(items, list) or len(items) > 64:
        raise Rejected("format", "proof: want a list of at most 64 hashes")
    for h in items:
        if not isinstance(h, str) or len(h) != 64 or not set(h) <= HEX:
            raise Rejected("format", "proof hash: want 64 lowercase hex")
    return [bytes.fromhex(h) for h in items]


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2."""
    if not 0 <= index < size:
        raise ValueError("index out of range")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("proof too short")
    return r


def parse_note(text: str) -> tuple[bytes, dict[tuple[str, bytes], bytes], str, int, bytes]:
    """C2SP signed note + tlog-checkpoint: body, {(name, key hash): sig}, origin, size, root."""
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise Rejected("format", "not a signed note")
    body, block = text[: split + 1], text[split + 2 : -1]
    sigs = {}
    for line in block.split("\n"):
        if not line.startswith("\u2014 "):
            raise Rejected("format", "signature line")
        name, _, b64 = line[2:].partition(" ")
        raw = base64.b64decode(b64, validate=True)
        sigs[(name, raw[:4])] = raw[4:]
    lines = body[:-1].split("\n")
    if len(lines) < 3 or not lines[1].isdigit():
        raise Rejected("format", "checkpoint body")
    return body.encode(), sigs, lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)


def ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


def verify(data: bytes, anchor_key: bytes, witnesses: dict[str, bytes]) -> dict[str, object]:
    """Runs the checks of docs/PROTOCOL.md section 11 in order; returns what was proven."""
    f = strict_decode(data)
    keys = {"checkpoint", "event", "gateway_key", "inclusion", "leaf_index", "ledger", "type"}
    if set(f) != keys | {"v"} or f["type"] != "pledgewatch-proof" or f["v"] != 1:
        raise Rejected("format", "keys, type or version")
    env, gk = f["event"], f["gateway_key"]
    rec, body = gk["record"], env["event"]
    if set(env) != {"event", "kid", "sig", "v"} or env["v"] != 1 or body["v"] != 1:
        raise Rejected("format", "envelope")
    if set(gk) != {"inclusion", "leaf_index", "record"}:
        raise Rejected("format", "gateway_key")
    event_path, key_path = hashes(f["inclusion"]), hashes(gk["inclusion"])
    cp_body, sigs, origin, size, root = parse_note(f["checkpoint"])
    public = bytes.fromhex(rec["public_key"])
    kid = hashlib.sha256(KEY_ID_DOMAIN + public).digest()[:16].hex()
    if rec["key_id"] != kid:
        raise Rejected("format", "record key_id")
    # event-signature
    sig = bytes.fromhex(env["sig"])
    if env["kid"] != kid or not ed25519(public, EVENT_DOMAIN + canon(body), sig):
        raise Rejected("event-signature", "kid or signature")
    # key-record
    until = rec["valid_until_ms"]
    if (
        rec["action"] != "enrol"
        or (rec["warehouse"], rec["gateway"]) != (body["warehouse"], body["gateway"])
        or body["ts_ms"] < rec["valid_from_ms"]
        or (until is not None and body["ts_ms"] >= until)
    ):
        raise Rejected("key-record", "action, ids or validity window")
    # key-included, event-included
    if not gk["leaf_index"] < f["leaf_index"]:
        raise Rejected("key-included", "enrolment after the event")
    for check, leaf, index, path in (
        ("key-included", canon({"key": rec, "type": "key", "v": 1}), gk["leaf_index"], key_path),
        (
            "event-included",
            canon({"signed": env, "type": "event", "v": 1}),
            f["leaf_index"],
            event_path,
        ),
    ):
        try:
            ok = root_from_inclusion(leaf_hash(leaf), index, size, path) == root
        except ValueError:
            ok = False
        if not ok:
            raise Rejected(check, "inclusion proof")
    # checkpoint-signature: Ed25519 note signature, key name = origin
    key_hash = hashlib.sha256(origin.encode() + b"\n\x01" + anchor_key).digest()[:4]
    anchor_sig = sigs.get((origin, key_hash), b"")
    if not ed25519(anchor_key, cp_body, anchor_sig):
        raise Rejected("checkpoint-signature", "no valid anchor signature")
    # witness-cosignature: cosignature/v1
    times = {}
    for name, wkey in witnesses.items():
        key_hash = hashlib.sha256(name.encode() + b"\n\x04" + wkey).digest()[:4]
        cosig = sigs.get((name, key_hash), b"")
        ts = int.from_bytes(cosig[:8], "big")
        message = b"cosignature/v1\ntime %d\n" % ts + cp_body
        if len(cosig) != 72 or not ed25519(wkey, message, cosig[8:]):
            raise Rejected("witness-cosignature", name)
        times[name] = ts
    # ledger
    ledger = f["ledger"]
    if ledger is not None:
        payload = LEDGER_DOMAIN + canon(
            {"origin": origin, "root": root.hex(), "size": size, "v": 1}
        )
        if bytes.fromhex(ledger["payload"]) != payload:
            raise Rejected("ledger", "payload")
        if ledger["backend"] == "sqlite":
            entry = hashlib.sha256(
                SQLITE_ENTRY_DOMAIN
                + bytes.fromhex(ledger["prev_hash"])
                + ledger["block_number"].to_bytes(8, "big")
                + ledger["block_time_ms"].to_bytes(8, "big")
                + payload
            ).hexdigest()
            if entry != ledger["tx_hash"]:
                raise Rejected("ledger", "sqlite entry hash")
    return {
        "event_id": hashlib.sha256(canon(body)).hexdigest(),
        "leaf_index": f["leaf_index"],
        "size": size,
        "witnessed": times,
    }


@pytest.fixture(scope="module")
def vector() -> dict:  # type: ignore[type-arg]
    result = subprocess.run(
        [sys.executable, str(HERE.parent / "test_prooffile.py")],
        cwd=HERE.parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _args(v: dict) -> tuple[bytes, dict[str, bytes]]:  # type: ignore[type-arg]
    return bytes.fromhex(v["anchor_key"]), {
        v["witness"]["name"]: bytes.fromhex(v["witness"]["key"])
    }


def test_this_module_uses_nothing_of_ours() -> None:
    tree = ast.parse(HERE.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    tops = {n.split(".")[0] for n in names}
    assert not tops & {"pledgewatch", "gateway", "anchor", "devices", "test_prooffile"}
    # The verifier proper needs only these; the rest runs the test.
    assert tops <= {"hashlib", "json", "base64", "nacl"} | {
        "__future__",
        "ast",
        "subprocess",
        "sys",
        "pathlib",
        "pytest",
    }


def test_independent_verifier_accepts_a_good_proof_file(vector: dict) -> None:  # type: ignore[type-arg]
    anchor_key, witnesses = _args(vector)
    proven = verify(vector["proof_file"].encode(), anchor_key, witnesses)
    assert proven["event_id"] == vector["event_id"]
    assert proven["leaf_index"] == vector["leaf_index"]
    assert list(proven["witnessed"]) == [vector["witness"]["name"]]  # type: ignore[call-overload]
    verify(vector["proof_file_no_ledger"].encode(), anchor_key, witnesses)


def _tamper(data: str, change: object) -> bytes:
    value = json.loads(data)
    change(value)  # type: ignore[operator]
    return canon(value)


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (
            lambda d: d["event"]["event"].__setitem__("qty", d["event"]["event"]["qty"] + 1),
            "event-signature",
        ),
        (lambda d: d.__setitem__("leaf_index", d["leaf_index"] + 1), "event-included"),
        (lambda d: d["gateway_key"].__setitem__("leaf_index", 1), "key-included"),
        (lambda d: d["gateway_key"]["record"].__setitem__("gateway", "gw-x"), "key-record"),
        (lambda d: d["inclusion"].__setitem__(0, "00" * 32), "event-included"),
        (
            lambda d: d.__setitem__(
                "checkpoint", d["checkpoint"].replace("\n\u2014 witness", "\n\u2014 wirness")
            ),
            "witness-cosignature",
        ),
        (lambda d: d["ledger"].__setitem__("block_time_ms", 1), "ledger"),
        (lambda d: d.__setitem__("v", 2), "format"),
    ],
)
def test_independent_verifier_rejects_a_tampered_one(
    vector: dict,  # type: ignore[type-arg]
    change: object,
    check: str,
) -> None:
    anchor_key, witnesses = _args(vector)
    with pytest.raises(Rejected) as info:
        verify(_tamper(vector["proof_file"], change), anchor_key, witnesses)
    assert info.value.check == check


def test_independent_verifier_rejects_a_stranger_anchor_and_a_late_key(vector: dict) -> None:  # type: ignore[type-arg]
    _, witnesses = _args(vector)
    with pytest.raises(Rejected) as info:
        verify(vector["proof_file"].encode(), b"\x07" * 32, witnesses)
    assert info.value.check == "checkpoint-signature"
    anchor_key, _ = _args(vector)
    with pytest.raises(Rejected) as info:
        verify(vector["late_key_proof_file"].encode(), anchor_key, witnesses)
    assert info.value.check == "key-included"
