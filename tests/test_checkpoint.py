"""C2SP checkpoints, signed notes and cosignatures: external vectors, exact bytes, mutations.

The external vectors (tests/vectors/checkpoint_external.json) were made by golang.org/x/mod's
note package, sigsum-go, transparency-dev/formats and the C2SP specs; Ed25519 is
deterministic, so where the source gives the private key our output must equal theirs byte for
byte.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pledgewatch.checkpoint import (
    COSIGNATURE_V1_HEADER,
    MAX_TREE_SIZE,
    SIG_TYPE_COSIGNATURE_V1,
    SIG_TYPE_ED25519,
    Checkpoint,
    NoteKeyType,
    NoteSignature,
    NoteVerifier,
    SignedNote,
    cosign,
    cosignature_message,
    note_key_hash,
    parse_signature_lines,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_cosignature,
    verify_note,
    with_signatures,
)
from pledgewatch.errors import (
    EncodingError,
    PledgewatchError,
    ProofError,
    SignatureError,
    ValidationError,
)
from pledgewatch.signing import SigningKey

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "vectors" / "checkpoint_external.json").read_text(encoding="utf-8")
)
EM = "\u2014"
LOG_KEY = SigningKey(hashlib.sha256(b"pledgewatch test log key").digest())
WITNESS_KEY = SigningKey(hashlib.sha256(b"pledgewatch test witness key").digest())
LOG_NAME = "pledgewatch.example/log"
WITNESS_NAME = "bank.example/witness"
ROOT = bytes(range(32))
EXAMPLE = Checkpoint(LOG_NAME, 5, ROOT)


def vector(section: str, name: str) -> dict[str, Any]:
    return next(v for v in VECTORS[section] if v["name"] == name)


def key_from_skey(skey: str) -> SigningKey:
    material = base64.b64decode(skey.split("+", 4)[4])
    assert material[0] == SIG_TYPE_ED25519
    return SigningKey(material[1:])


# ---- external vectors -------------------------------------------------------------------------


def test_go_note_sign_is_byte_identical() -> None:
    v = vector("signed_notes", "peter-neumann-sign")
    key = key_from_skey(v["skey"])
    text = v["text"].encode()
    note = SignedNote(text, (sign_note(text, "PeterNeumann", key),))
    assert note.to_bytes() == v["note"].encode()
    assert NoteVerifier.ed25519("PeterNeumann", key.public_key).vkey() == v["vkey"]


def test_go_note_with_two_signatures_verifies_each() -> None:
    v = vector("signed_notes", "peter-and-enoch-open")
    note = SignedNote.parse(v["note"].encode())
    assert note.body == v["text"].encode()
    assert note.to_bytes() == v["note"].encode()
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
    for vkey in v["vkeys"]:
        verifier = NoteVerifier.from_vkey(vkey)
        verify_note(note, verifier.name, verifier.public_key)


@pytest.mark.parametrize("case", VECTORS["malformed_notes"]["cases"])
def test_go_malformed_notes_are_rejected(case: str) -> None:
    with pytest.raises(PledgewatchError):
        SignedNote.parse(case.encode())


def test_go_malformed_note_with_invalid_utf8_is_rejected() -> None:
    with pytest.raises(EncodingError, match="UTF-8"):
        SignedNote.parse(bytes.fromhex(VECTORS["malformed_notes"]["invalid_utf8_case_hex"]))


def test_real_sum_golang_org_checkpoint_verifies() -> None:
    v = vector("checkpoints", "sum-golang-org-2024-09-23")
    key = NoteVerifier.from_vkey(v["vkey"])
    cp = verify_checkpoint(v["note"].encode(), key.name, key.public_key, origin=v["origin"])
    assert (cp.origin, cp.size, cp.root) == (
        v["origin"],
        v["size"],
        base64.b64decode(v["root_b64"]),
    )
    assert cp.body() == SignedNote.parse(v["note"].encode()).body


def test_sigsum_checkpoint_verifies_and_is_reproduced() -> None:
    v = vector("checkpoints", "sigsum-valid-checkpoint")
    key = SigningKey(bytes.fromhex(v["seed_hex"]))
    cp = verify_checkpoint(v["note"].encode(), v["key_name"], key.public_key)
    assert cp.size == v["size"]
    assert sign_checkpoint(cp, v["key_name"], key).to_bytes() == v["note"].encode()


def test_c2sp_example_checkpoint_parses() -> None:
    v = vector("checkpoints", "c2sp-behind-the-sofa")
    note = SignedNote.parse(v["note"].encode())
    cp = Checkpoint.parse(note.body)
    assert (cp.origin, cp.size, cp.extensions) == (v["origin"], v["size"], ())


def test_sigsum_cosignature_is_byte_identical_and_verifies() -> None:
    v = vector("cosignatures", "sigsum-cosign-1234")
    key = SigningKey(bytes.fromhex(v["seed_hex"]))
    body = v["body"].encode()
    sig = cosign(body, v["witness_name"], key, v["timestamp"])
    assert sig.line() == v["line"].encode()
    decoys = parse_signature_lines("".join(v["other_lines"]).encode())
    note = SignedNote(body, (*decoys, sig))
    assert verify_cosignature(note, v["witness_name"], key.public_key) == v["timestamp"]
    # the decoys alone (other key hash, other name) are not a cosignature by this key
    with pytest.raises(SignatureError, match="no signature by"):
        verify_cosignature(SignedNote(body, decoys), v["witness_name"], key.public_key)


def test_c2sp_cosignature_example_layout() -> None:
    v = vector("cosignatures", "c2sp-cosignature-example")
    note = SignedNote.parse(v["note"].encode())
    (witness,) = [s for s in note.signatures if s.name == v["witness_name"]]
    assert len(witness.signature) == 8 + 64
    assert int.from_bytes(witness.signature[:8], "big") == v["timestamp"]


@pytest.mark.parametrize("vkey", VECTORS["vkeys"]["valid"])
def test_external_vkeys_parse_and_key_hashes_match(vkey: str) -> None:
    verifier = NoteVerifier.from_vkey(vkey)
    assert verifier.vkey() == vkey
    assert verifier.key_hash == note_key_hash(verifier.name, verifier.kind, verifier.public_key)


@pytest.mark.parametrize("vkey", VECTORS["vkeys"]["invalid"])
def test_external_bad_vkeys_are_rejected(vkey: str) -> None:
    with pytest.raises(PledgewatchError):
        NoteVerifier.from_vkey(vkey)


def test_vkey_with_a_wrong_key_hash_is_rejected() -> None:
    good = VECTORS["vkeys"]["valid"][2]
    with pytest.raises(ValidationError, match="key hash"):
        NoteVerifier.from_vkey(good.replace("c74f20a3", "c74f20a4"))


# ---- exact bytes ------------------------------------------------------------------------------


def test_checkpoint_body_exact_bytes() -> None:
    assert EXAMPLE.body() == (
        b"pledgewatch.example/log\n5\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
    )
    with_ext = Checkpoint(LOG_NAME, 0, ROOT, ("ext one", "ext two"))
    assert with_ext.body().endswith(b"=\next one\next two\n")
    assert Checkpoint.parse(with_ext.body()) == with_ext


def test_signed_note_exact_bytes() -> None:
    note = sign_checkpoint(EXAMPLE, LOG_NAME, LOG_KEY)
    (sig,) = note.signatures
    key_hash = hashlib.sha256(LOG_NAME.encode() + b"\n\x01" + LOG_KEY.public_key).digest()[:4]
    assert sig.key_hash == key_hash
    expected = (
        EXAMPLE.body()
        + b"\n"
        + b"\xe2\x80\x94 "
        + LOG_NAME.encode()
        + b" "
        + base64.b64encode(key_hash + LOG_KEY.sign(b"", EXAMPLE.body()))
        + b"\n"
    )
    assert note.to_bytes() == expected


def test_cosignature_exact_bytes() -> None:
    body = EXAMPLE.body()
    assert cosignature_message(body, 1700000000) == b"cosignature/v1\ntime 1700000000\n" + body
    sig = cosign(body, WITNESS_NAME, WITNESS_KEY, 1700000000)
    key_hash = hashlib.sha256(WITNESS_NAME.encode() + b"\n\x04" + WITNESS_KEY.public_key)
    assert sig.key_hash == key_hash.digest()[:4]
    assert sig.signature[:8] == (1700000000).to_bytes(8, "big")
    assert sig.signature[8:] == WITNESS_KEY.sign(COSIGNATURE_V1_HEADER, b"time 1700000000\n" + body)


def test_vkeys_carry_their_type_byte() -> None:
    ed = NoteVerifier.ed25519(LOG_NAME, LOG_KEY.public_key)
    co = NoteVerifier.cosignature_v1(WITNESS_NAME, WITNESS_KEY.public_key)
    assert base64.b64decode(ed.vkey().split("+", 2)[2])[0] == SIG_TYPE_ED25519
    assert base64.b64decode(co.vkey().split("+", 2)[2])[0] == SIG_TYPE_COSIGNATURE_V1
    assert NoteVerifier.from_vkey(co.vkey()) == co
    assert co.kind is NoteKeyType.COSIGNATURE_V1


# ---- round trips ------------------------------------------------------------------------------

line_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), min_size=1, max_size=40
)
key_names = st.text(
    alphabet=st.characters(min_codepoint=0x21, exclude_categories=("Cs", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=30,
).filter(lambda s: "+" not in s and "\x85" not in s and "\xa0" not in s)


@settings(max_examples=200, deadline=None)
@given(
    origin=line_text,
    size=st.integers(0, MAX_TREE_SIZE),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(line_text, max_size=3).map(tuple),
)
def test_checkpoint_round_trip(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    cp = Checkpoint(origin, size, root, extensions)
    assert Checkpoint.parse(cp.body()) == cp


@settings(max_examples=50, deadline=None)
@given(name=key_names, size=st.integers(0, 2**40), timestamp=st.integers(0, 2**63 - 1))
def test_signed_and_cosigned_round_trip(name: str, size: int, timestamp: int) -> None:
    cp = Checkpoint(LOG_NAME, size, ROOT)
    note = sign_checkpoint(cp, name, LOG_KEY)
    cosigned = with_signatures(note, [cosign(cp.body(), name, WITNESS_KEY, timestamp)])
    data = cosigned.to_bytes()
    assert SignedNote.parse(data) == cosigned
    assert verify_checkpoint(data, name, LOG_KEY.public_key, origin=LOG_NAME) == cp
    assert verify_cosignature(SignedNote.parse(data), name, WITNESS_KEY.public_key) == timestamp


# ---- rejections -------------------------------------------------------------------------------

GOOD_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\n",
        b"o\n1\n",
        b"o\n5\n" + GOOD_ROOT.encode(),  # no final newline
        b"\n5\n" + GOOD_ROOT.encode() + b"\n",  # empty origin
        b"o\n05\n" + GOOD_ROOT.encode() + b"\n",  # leading zero
        b"o\n-1\n" + GOOD_ROOT.encode() + b"\n",
        b"o\n+1\n" + GOOD_ROOT.encode() + b"\n",
        b"o\n 1\n" + GOOD_ROOT.encode() + b"\n",
        b"o\n1.0\n" + GOOD_ROOT.encode() + b"\n",
        "o\n\u0661\n".encode() + GOOD_ROOT.encode() + b"\n",  # ARABIC-INDIC DIGIT ONE
        b"o\n9223372036854775808\n" + GOOD_ROOT.encode() + b"\n",  # 2**63
        b"o\n123456789012345678901\n" + GOOD_ROOT.encode() + b"\n",
        b"o\n5\n" + GOOD_ROOT.rstrip("=").encode() + b"\n",  # unpadded
        b"o\n5\n" + base64.urlsafe_b64encode(b"\xff" * 32) + b"\n",  # URL alphabet
        b"o\n5\n" + base64.b64encode(ROOT[:31]) + b"\n",  # 31 bytes
        b"o\n5\n" + base64.b64encode(ROOT + b"\x00") + b"\n",  # 33 bytes
        b"o\n5\n" + GOOD_ROOT[:-2].encode() + b"9=\n",  # padding bits set
        b"o\n5\n" + GOOD_ROOT.encode() + b"\n\n",  # empty extension line
        b"o\n5\n" + GOOD_ROOT.encode() + b"\n\next\n",
        b"o\r\n5\r\n" + GOOD_ROOT.encode() + b"\r\n",  # CRLF
        b"o\t\n5\n" + GOOD_ROOT.encode() + b"\n",
        b"\xff\n5\n" + GOOD_ROOT.encode() + b"\n",
        b"o\x00\n5\n" + GOOD_ROOT.encode() + b"\n",
    ],
)
def test_checkpoint_parse_rejects(body: bytes) -> None:
    with pytest.raises(PledgewatchError):
        Checkpoint.parse(body)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"origin": ""}, "origin"),
        ({"origin": "a\nb"}, "origin"),
        ({"origin": "\ud800"}, "Unicode"),
        ({"size": -1}, "size"),
        ({"size": 2**63}, "size"),
        ({"size": True}, "size"),
        ({"root": b"\x00" * 31}, "root"),
        ({"extensions": ("",)}, "extension"),
        ({"extensions": ["x"]}, "extensions"),
    ],
)
def test_checkpoint_constructor_rejects(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"origin": LOG_NAME, "size": 1, "root": ROOT} | kwargs
    with pytest.raises(ValidationError, match=message):
        Checkpoint(**fields)


def signed_example() -> bytes:
    return sign_checkpoint(EXAMPLE, LOG_NAME, LOG_KEY).to_bytes()


def test_every_byte_flip_of_a_signed_checkpoint_is_rejected() -> None:
    data = signed_example()
    verify_checkpoint(data, LOG_NAME, LOG_KEY.public_key, origin=LOG_NAME)
    for i in range(len(data)):
        for mask in (0x01, 0x20, 0x80):
            bad = bytearray(data)
            bad[i] ^= mask
            with pytest.raises(PledgewatchError):
                verify_checkpoint(bytes(bad), LOG_NAME, LOG_KEY.public_key, origin=LOG_NAME)


def fully_verify(data: bytes) -> None:
    """What a client of a witnessed log does: the log's signature and the witness's."""
    verify_checkpoint(data, LOG_NAME, LOG_KEY.public_key, origin=LOG_NAME)
    verify_cosignature(SignedNote.parse(data), WITNESS_NAME, WITNESS_KEY.public_key)


def test_every_byte_flip_of_a_cosigned_checkpoint_is_rejected() -> None:
    note = sign_checkpoint(EXAMPLE, LOG_NAME, LOG_KEY)
    data = with_signatures(note, [cosign(note.body, WITNESS_NAME, WITNESS_KEY, 1234)]).to_bytes()
    fully_verify(data)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises(PledgewatchError):
            fully_verify(bytes(bad))


def test_wrong_name_wrong_key_and_wrong_origin_are_rejected() -> None:
    data = signed_example()
    other = SigningKey(hashlib.sha256(b"other").digest())
    with pytest.raises(SignatureError, match=r"no signature by other\.example"):
        verify_checkpoint(data, "other.example", LOG_KEY.public_key)
    with pytest.raises(SignatureError, match="no signature by"):
        verify_checkpoint(data, LOG_NAME, other.public_key)
    with pytest.raises(ProofError, match="origin") as info:
        verify_checkpoint(data, LOG_NAME, LOG_KEY.public_key, origin="elsewhere.example/log")
    assert info.value.expected == "elsewhere.example/log"
    assert info.value.computed == LOG_NAME


def test_right_key_hash_but_wrong_signature_is_rejected() -> None:
    note = sign_checkpoint(EXAMPLE, LOG_NAME, LOG_KEY)
    (sig,) = note.signatures
    forged = NoteSignature(sig.name, sig.key_hash, bytes(64))
    with pytest.raises(SignatureError, match="does not verify"):
        verify_checkpoint(SignedNote(note.body, (forged,)).to_bytes(), LOG_NAME, LOG_KEY.public_key)
    short = NoteSignature(sig.name, sig.key_hash, sig.signature[:63])
    with pytest.raises(SignatureError, match="want 64"):
        verify_checkpoint(SignedNote(note.body, (short,)).to_bytes(), LOG_NAME, LOG_KEY.public_key)


def test_signature_over_another_body_is_rejected() -> None:
    note = sign_checkpoint(EXAMPLE, LOG_NAME, LOG_KEY)
    grown = Checkpoint(LOG_NAME, 6, ROOT)
    swapped = SignedNote(grown.body(), note.signatures).to_bytes()
    with pytest.raises(SignatureError, match="does not verify"):
        verify_checkpoint(swapped, LOG_NAME, LOG_KEY.public_key)


def test_duplicate_and_missing_lines_are_rejected() -> None:
    data = signed_example()
    body, _, sig_line = data.partition(b"\n\n")
    with pytest.raises(ValidationError, match="two signatures"):
        SignedNote.parse(data + sig_line)
    with pytest.raises(EncodingError, match="final newline"):
        SignedNote.parse(data[:-1])
    with pytest.raises(EncodingError, match="blank line"):
        SignedNote.parse(body + b"\n" + sig_line)
    with pytest.raises(PledgewatchError):
        verify_checkpoint(body + b"\n\n\n" + sig_line, LOG_NAME, LOG_KEY.public_key)
    lines = body.split(b"\n")
    doubled = b"\n".join([lines[0], *lines]) + b"\n\n" + sig_line
    with pytest.raises(PledgewatchError):
        verify_checkpoint(doubled, LOG_NAME, LOG_KEY.public_key)


def test_note_signed_over_a_non_canonical_body_is_still_refused() -> None:
    body = b"pledgewatch.example/log\n05\n" + GOOD_ROOT.encode() + b"\n"
    note = SignedNote(body, (sign_note(body, LOG_NAME, LOG_KEY),)).to_bytes()
    with pytest.raises(EncodingError, match="leading"):
        verify_checkpoint(note, LOG_NAME, LOG_KEY.public_key)


@pytest.mark.parametrize(
    "line",
    [
        "- name AAAAAAA=",  # ASCII hyphen, not U+2014
        f"{EM}name AAAAAAA=",
        f"{EM} name",
        f"{EM}  AAAAAAA=",  # empty name
        f"{EM} na+me AAAAAAA=",
        f"{EM} na\u00a0me AAAAAAA=",
        f"{EM} name AAAA",  # 3 bytes: no signature after the key hash
        f"{EM} name AAAAAAA",  # unpadded
        f"{EM} name AAAAAAA= ",
        f"{EM} name AAAAAAB=",  # padding bits
    ],
)
def test_bad_signature_lines_are_rejected(line: str) -> None:
    with pytest.raises(PledgewatchError):
        NoteSignature.parse_line(line)


def test_cosignature_rejections() -> None:
    body = EXAMPLE.body()
    good = cosign(body, WITNESS_NAME, WITNESS_KEY, 99)
    note = SignedNote(body, (good,))
    # the witness's key as a plain note key (type 0x01) has another key hash
    with pytest.raises(SignatureError, match="no signature by"):
        verify_note(note, WITNESS_NAME, WITNESS_KEY.public_key)
    retimed = NoteSignature(good.name, good.key_hash, (100).to_bytes(8, "big") + good.signature[8:])
    with pytest.raises(SignatureError, match="does not verify"):
        verify_cosignature(SignedNote(body, (retimed,)), WITNESS_NAME, WITNESS_KEY.public_key)
    huge = NoteSignature(good.name, good.key_hash, b"\xff" * 8 + good.signature[8:])
    with pytest.raises(SignatureError, match="2\\*\\*63"):
        verify_cosignature(SignedNote(body, (huge,)), WITNESS_NAME, WITNESS_KEY.public_key)
    short = NoteSignature(good.name, good.key_hash, good.signature[:-1])
    with pytest.raises(SignatureError, match="want 72"):
        verify_cosignature(SignedNote(body, (short,)), WITNESS_NAME, WITNESS_KEY.public_key)
    with pytest.raises(PledgewatchError):
        cosign(b"not a checkpoint\n", WITNESS_NAME, WITNESS_KEY, 1)
    for bad_time in (-1, 2**63, True):
        with pytest.raises(ValidationError, match="timestamp"):
            cosign(body, WITNESS_NAME, WITNESS_KEY, bad_time)


def test_with_signatures_replaces_a_signature_by_the_same_key() -> None:
    note = sign_checkpoint(EXAMPLE, LOG_NAME, LOG_KEY)
    first = with_signatures(note, [cosign(note.body, WITNESS_NAME, WITNESS_KEY, 1)])
    second = with_signatures(first, [cosign(note.body, WITNESS_NAME, WITNESS_KEY, 2)])
    assert len(second.signatures) == 2
    assert verify_cosignature(second, WITNESS_NAME, WITNESS_KEY.public_key) == 2
    assert second.signatures[0] == note.signatures[0]


def test_signed_note_constructor_rejects() -> None:
    sig = sign_checkpoint(EXAMPLE, LOG_NAME, LOG_KEY).signatures[0]
    with pytest.raises(ValidationError, match="at least one"):
        SignedNote(EXAMPLE.body(), ())
    with pytest.raises(ValidationError, match="two signatures"):
        SignedNote(EXAMPLE.body(), (sig, sig))
    with pytest.raises(EncodingError, match="final newline"):
        SignedNote(EXAMPLE.body()[:-1], (sig,))
    with pytest.raises(ValidationError, match="key hash"):
        NoteSignature(LOG_NAME, b"\x00" * 3, b"x")


def test_too_many_signatures_are_rejected() -> None:
    body = EXAMPLE.body()
    lines = b"".join(NoteSignature(f"w{i}", b"\x00" * 4, b"\x01").line() for i in range(101))
    with pytest.raises(ValidationError, match="limit"):
        SignedNote.parse(body + b"\n" + lines)


# ---- hostile input ----------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes_raise_our_errors_or_round_trip(data: bytes) -> None:
    try:
        cp = Checkpoint.parse(data)
    except PledgewatchError:
        pass
    else:
        assert cp.body() == data
    try:
        note = SignedNote.parse(data)
    except PledgewatchError:
        pass
    else:
        assert note.to_bytes() == data
    with pytest.raises(PledgewatchError):
        verify_checkpoint(data, LOG_NAME, LOG_KEY.public_key)


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(0, 10**6),
    replacement=st.binary(max_size=3),
    delete=st.integers(0, 3),
)
def test_any_splice_of_a_signed_checkpoint_is_rejected_or_unchanged(
    position: int, replacement: bytes, delete: int
) -> None:
    data = signed_example()
    i = position % (len(data) + 1)
    spliced = data[:i] + replacement + data[i + delete :]
    if spliced == data:
        return
    with pytest.raises(PledgewatchError):
        verify_checkpoint(spliced, LOG_NAME, LOG_KEY.public_key, origin=LOG_NAME)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=120))
def test_arbitrary_vkey_and_signature_text_raise_our_errors(text: str) -> None:
    for parse in (NoteVerifier.from_vkey, NoteSignature.parse_line):
        with contextlib.suppress(PledgewatchError):
            parse(text)
