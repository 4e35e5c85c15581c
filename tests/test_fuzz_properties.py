"""Hostile input to the core parsers: either it verifies correctly or it raises our own error.

These fill the gaps left by the per-module property tests (test_canonical, test_events_signing,
test_merkle_properties, test_prooffile, test_checkpoint): inputs *built to look almost right*
— non-canonical respellings of valid values, mutated signed envelopes, proofs of the exact
required length at huge tree sizes, byte-level edits of a real proof file, structured checkpoint
bodies, receipts and release tokens — so the checks deep inside are reached, not only the first
guard. Every test asserts "our error, never another exception" and "never a false accept".
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from anchor.ingest import Ingestor, Message, Reject
from anchor.registry import RegisteredKey
from pledgewatch import canonical, merkle
from pledgewatch.checkpoint import Checkpoint, SignedNote, sign_checkpoint, verify_checkpoint
from pledgewatch.errors import EncodingError, PledgewatchError, ProofError, SignatureError
from pledgewatch.events import Event, Kind, SignedEvent
from pledgewatch.logentry import parse_leaf
from pledgewatch.merkle.verify import (
    consistency_proof_length,
    inclusion_proof_length,
    root_from_consistency_proof,
    root_from_inclusion_proof,
)
from pledgewatch.prooffile import VerificationFailed, parse_proof_file
from pledgewatch.receipts import Receipt, ReceiptItem, ReceiptStatus, parse_receipt, sign_receipt
from pledgewatch.release import RELEASE_DOMAIN, ReleaseToken, parse_token, sign_token
from pledgewatch.signing import (
    EVENT_DOMAIN,
    RECEIPT_DOMAIN,
    SigningKey,
    ed25519_verify,
    sign_event,
    verify,
    verify_event,
)

from test_prooffile import GOOD, GOOD_CLAIM, WORLD, claim

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OWNER = SigningKey(bytes([41]) * 32)
STRANGER = SigningKey(bytes([42]) * 32)
# The group order of Ed25519: S and S + L are the same scalar, so a verifier that does not
# insist on S < L accepts a second signature for every message (malleability).
L = 2**252 + 27742317777372353535851937790883648493

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-canonical.MAX_SAFE_INT, canonical.MAX_SAFE_INT)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(max_codepoint=127), max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)


def decodes_exactly(data: bytes) -> Any:
    """``canonical.decode`` must raise EncodingError or return a value encoding to ``data``."""
    try:
        value = canonical.decode(data, max_bytes=1 << 20)
    except EncodingError:
        return None
    assert canonical.encode(value) == data, data[:200]
    return value


# ---- canonical bytes ------------------------------------------------------------------------


def respellings(value: Any) -> list[bytes]:
    """The same JSON value written in ways the standard library allows but canonical doesn't."""
    out = [
        json.dumps(value, indent=1).encode(),
        json.dumps(value, ensure_ascii=True, separators=(",", ":"), sort_keys=True).encode(),
        json.dumps(value, separators=(", ", ": "), sort_keys=True).encode(),
        json.dumps(_reversed_keys(value), ensure_ascii=False, separators=(",", ":")).encode(),
        json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
        + b"\n",
    ]
    return out


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in sorted(value, reverse=True)}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


@FAST
@given(json_values)
def test_every_respelling_of_a_value_is_refused_or_is_the_canonical_bytes(value: Any) -> None:
    try:
        good = canonical.encode(value)
    except EncodingError:
        return  # a lone surrogate or too deep: not a canonical value at all
    for data in respellings(value):
        if data == good:
            assert canonical.decode(data, max_bytes=1 << 20) == value
        else:
            with pytest.raises(EncodingError):
                canonical.decode(data, max_bytes=1 << 20)


NUMBER_SPELLINGS = ["{n}.0", "{n}e0", "{n}E+0", "0{n}", "+{n}", "{n}.", "-0", "0x1f", "1_000"]


@FAST
@given(
    n=st.integers(0, canonical.MAX_SAFE_INT),
    spelling=st.sampled_from(NUMBER_SPELLINGS),
    wrap=st.sampled_from(["{}", "[{}]", '{{"a":{}}}', '[1,{},"x"]']),
)
def test_numbers_in_any_non_canonical_spelling_are_refused(
    n: int, spelling: str, wrap: str
) -> None:
    data = wrap.format(spelling.format(n=n)).encode()
    with pytest.raises(EncodingError):
        canonical.decode(data)


@FAST
@given(
    n=st.one_of(
        st.integers(canonical.MAX_SAFE_INT + 1, 2**70),
        st.integers(max_value=-canonical.MAX_SAFE_INT - 1, min_value=-(2**70)),
        st.integers(4200, 5000).map(lambda d: 10**d - 1),
        st.integers(4200, 5000).map(lambda d: -(10**d)),
    ),
    wrap=st.sampled_from(["{}", "[{}]", '{{"a":{}}}', '{{"a":[true,{}]}}']),
)
def test_huge_integers_are_refused_not_crashed_on(n: int, wrap: str) -> None:
    # Python refuses int() of > 4300 digits with ValueError: that must surface as ours.
    with pytest.raises(EncodingError):
        canonical.decode(wrap.format(_digits(n)).encode(), max_bytes=1 << 20)
    with pytest.raises(EncodingError):
        canonical.encode([{"a": n}])


def _digits(n: int) -> str:
    """``str(n)`` for numbers past the interpreter's 4300-digit conversion limit."""
    sign = "-" if n < 0 else ""
    n = abs(n)
    chunks = []
    while n:
        n, rest = divmod(n, 10**1000)
        chunks.append(f"{rest:01000d}")
    return sign + "".join(reversed(chunks)).lstrip("0")


OPENERS = ["[", '{"k":', '["[{",', '{"}]\\"":', '[{"a{":1},']
LEAVES = {"1": 0, '"]]]}}}"': 0, '"\\\\"': 0, "[]": 1, "{}": 1, '"\\"[["': 0}


@FAST
@given(
    depth=st.integers(1, 40),
    opener=st.lists(st.sampled_from(OPENERS), min_size=1),
    leaf=st.sampled_from(sorted(LEAVES)),
)
def test_nesting_is_accepted_exactly_up_to_max_depth(
    depth: int, opener: list[str], leaf: str
) -> None:
    """Brackets inside strings (and escaped quotes) must not fool the pre-parse depth count."""
    opens = [opener[i % len(opener)] for i in range(depth)]
    closes = ["]" if o.startswith("[") else "}" for o in reversed(opens)]
    data = ("".join(opens) + leaf + "".join(closes)).encode()
    deepest = max([depth + LEAVES[leaf]] + [i + 2 for i, o in enumerate(opens) if o == OPENERS[4]])
    if deepest <= canonical.MAX_DEPTH:
        assert canonical.encode(canonical.decode(data)) == data
    else:
        with pytest.raises(EncodingError, match="deeper"):
            canonical.decode(data)


@FAST
@given(
    prefix=st.text(max_size=5),
    bad=st.sampled_from(
        [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80", b"\xf8"]
    ),
    wrap=st.sampled_from([b'"{}"', b'["{}"]', b'{{"a":"{}"}}']),
)
def test_invalid_utf8_anywhere_in_a_string_is_refused(prefix: str, bad: bytes, wrap: bytes) -> None:
    inner = canonical.encode(prefix)[1:-1] + bad
    data = wrap.replace(b"{}", inner).replace(b"{{", b"{").replace(b"}}", b"}")
    with pytest.raises(EncodingError):
        canonical.decode(data)


@FAST
@given(st.sampled_from(["\\ud800", "\\udfff", "\\ud83d", "a\\udc00b"]))
def test_escaped_lone_surrogates_are_refused(escape: str) -> None:
    with pytest.raises(EncodingError):
        canonical.decode(f'["{escape}"]'.encode())


@FAST
@given(
    st.dictionaries(
        st.text(st.characters(max_codepoint=127), max_size=4), json_values, min_size=1, max_size=4
    ),
    st.data(),
)
def test_duplicate_keys_are_refused_wherever_they_sit(
    obj: dict[str, Any], data: st.DataObject
) -> None:
    key = data.draw(st.sampled_from(sorted(obj)))
    try:
        members = [canonical.encode({k: obj[k]})[1:-1] for k in sorted(obj)]
        dup = canonical.encode({key: data.draw(json_values)})[1:-1]
    except EncodingError:
        return
    at = sorted(obj).index(key)
    members.insert(at + data.draw(st.integers(0, 1)), dup)
    with pytest.raises(EncodingError):
        canonical.decode(b"{" + b",".join(members) + b"}", max_bytes=1 << 20)


# ---- signed events --------------------------------------------------------------------------


def good_event(**overrides: Any) -> Event:
    fields: dict[str, Any] = dict(
        kind=Kind.LOAD, warehouse="wh-1", gateway="gw-1", device="dock-a", seq=2,
        prev="ab" * 32, ts_ms=1_767_225_600_000, bay="b1", sku="steel", lot="lot-7", qty=4,
    )  # fmt: skip
    fields.update(overrides)
    return Event(**fields)


GOOD_SIGNED = sign_event(good_event(), OWNER)
GOOD_WIRE = GOOD_SIGNED.to_wire()
GOOD_ENVELOPE = canonical.decode(GOOD_SIGNED.to_wire())

hostile_values: st.SearchStrategy[Any] = st.one_of(
    json_values,
    st.sampled_from(
        [0, -1, 1, 2**53 - 1, -(2**53) + 1, True, False, None, "", "x" * 129, "LOAD", "load",
         "\x00", "a\nb", "ab" * 32, "AB" * 32, "0" * 64, "0" * 32, "f" * 128, [], {}]
    ),
)  # fmt: skip


@FAST
@given(field=st.sampled_from(sorted(GOOD_ENVELOPE["event"])), value=hostile_values)
def test_an_event_field_replaced_never_verifies(field: str, value: Any) -> None:
    envelope = json.loads(json.dumps(GOOD_ENVELOPE))
    envelope["event"][field] = value
    try:
        wire = canonical.encode(envelope)
    except EncodingError:
        return
    assume(wire != GOOD_SIGNED.to_wire())
    with pytest.raises(PledgewatchError):
        verify_event(SignedEvent.from_wire(wire), OWNER.public_key)


@FAST
@given(
    event=hostile_values,
    kid=hostile_values | st.just(OWNER.key_id),
    sig=hostile_values | st.just(GOOD_ENVELOPE["sig"]),
    v=hostile_values | st.just(1),
    extra=st.dictionaries(st.sampled_from(["x", "V", "sig2", "event "]), json_values, max_size=1),
)
def test_arbitrary_envelopes_raise_our_error(
    event: Any, kid: Any, sig: Any, v: Any, extra: dict[str, Any]
) -> None:
    try:
        wire = canonical.encode({"event": event, "kid": kid, "sig": sig, "v": v, **extra})
    except EncodingError:
        return
    with pytest.raises(PledgewatchError):
        verify_event(SignedEvent.from_wire(wire), OWNER.public_key)


@FAST
@given(
    overrides=st.fixed_dictionaries(
        {},
        optional={
            "qty": st.integers(1, 10**6),
            "seq": st.integers(1, 10**9),
            "lot": st.text(
                st.characters(min_codepoint=0x20, max_codepoint=0x2FF), min_size=1, max_size=20
            ),
            "ts_ms": st.integers(0, canonical.MAX_SAFE_INT),
        },
    )
)
def test_accepted_envelopes_slice_exactly_the_signed_body(overrides: dict[str, Any]) -> None:
    """``from_wire`` hashes and verifies a *slice* of the wire: it must be the body's bytes."""
    try:
        event = good_event(**overrides)
    except PledgewatchError:
        return
    signed = SignedEvent.from_wire(sign_event(event, OWNER).to_wire())
    assert signed.body == event.canonical()
    assert signed.event_id == event.event_id()
    verify_event(signed, OWNER.public_key)


@FAST
@given(
    overrides=st.fixed_dictionaries(
        {}, optional={"qty": st.integers(1, 99), "seq": st.integers(3, 99)}
    ),
    claim_owner=st.booleans(),
)
def test_an_event_resigned_by_a_stranger_never_verifies_for_the_owner(
    overrides: dict[str, Any], claim_owner: bool
) -> None:
    forged = sign_event(good_event(**overrides), STRANGER)
    if claim_owner:  # the stranger's signature under the owner's key id
        forged = SignedEvent(forged.event, OWNER.key_id, forged.signature)
    with pytest.raises(SignatureError):
        verify_event(SignedEvent.from_wire(forged.to_wire()), OWNER.public_key)


# ---- Ed25519 --------------------------------------------------------------------------------


@FAST
@given(
    seed=st.binary(min_size=32, max_size=32),
    message=st.binary(max_size=64),
    part=st.sampled_from(["message", "signature", "key"]),
    position=st.integers(0, 10**6),
    xor=st.integers(1, 255),
)
def test_ed25519_never_verifies_a_changed_message_signature_or_key(
    seed: bytes, message: bytes, part: str, position: int, xor: int
) -> None:
    key = SigningKey(seed)
    sig = key.sign(EVENT_DOMAIN, message)
    verify(key.public_key, EVENT_DOMAIN, message, sig)
    parts = {"message": message, "signature": sig, "key": key.public_key}
    target = bytearray(parts[part] or b"\x00")
    target[position % len(target)] ^= xor
    parts[part] = bytes(target)
    with pytest.raises(SignatureError):
        verify(parts["key"], EVENT_DOMAIN, parts["message"], parts["signature"])


@FAST
@given(seed=st.binary(min_size=32, max_size=32), message=st.binary(max_size=64))
def test_ed25519_refuses_the_malleable_s_plus_l_twin(seed: bytes, message: bytes) -> None:
    key = SigningKey(seed)
    sig = key.sign(EVENT_DOMAIN, message)
    s = int.from_bytes(sig[32:], "little") + L
    assume(s < 2**256)
    with pytest.raises(SignatureError):
        verify(key.public_key, EVENT_DOMAIN, message, sig[:32] + s.to_bytes(32, "little"))


SMALL_ORDER_KEYS = [
    bytes(32),  # y = 0: a point of order 4
    b"\x01" + bytes(31),  # the identity point
    bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),  # order 2
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),  # order 8
]


@pytest.mark.parametrize("public_key", SMALL_ORDER_KEYS, ids=lambda k: k.hex()[:8])
def test_ed25519_refuses_small_order_keys_with_trivial_signatures(public_key: bytes) -> None:
    """With A and R of small order and S = 0 the verification equation holds for every
    message under a lax verifier; libsodium refuses such keys, and so must we."""
    for r in SMALL_ORDER_KEYS:
        with pytest.raises(SignatureError):
            ed25519_verify(public_key, b"any message at all", r + bytes(32))


@FAST
@given(
    public_key=st.one_of(st.binary(max_size=40), st.text(max_size=40), st.none(), st.integers()),
    signature=st.one_of(st.binary(max_size=70), st.text(max_size=70), st.none()),
)
def test_ed25519_on_wrongly_typed_or_sized_input_raises_signature_error(
    public_key: Any, signature: Any
) -> None:
    with pytest.raises(SignatureError):
        ed25519_verify(public_key, b"message", signature)


# ---- Merkle proofs at sizes no pool of leaves reaches ---------------------------------------

big_counts = st.one_of(
    st.integers(1, 2**64 - 1),
    st.sampled_from([2**63, 2**63 - 1, 2**64 - 1, 2**64 - 2, 2**32 + 1]),
)
out_of_range = st.sampled_from([-1, -(2**64), 2**64, 2**64 + 1, 2**80, 2**1000])


@FAST
@given(size=big_counts, data=st.data())
def test_inclusion_at_huge_sizes_accepts_only_the_root_it_computes(
    size: int, data: st.DataObject
) -> None:
    index = data.draw(st.integers(0, size - 1) | st.sampled_from([size, size + 1, -1]))
    leaf = data.draw(st.binary(min_size=32, max_size=32))
    n = inclusion_proof_length(index, size) if 0 <= index < size else 3
    n += data.draw(st.sampled_from([0, 0, 0, -1, 1]))
    proof = data.draw(
        st.lists(st.binary(min_size=32, max_size=32), min_size=max(n, 0), max_size=max(n, 0))
    )
    try:
        root = root_from_inclusion_proof(leaf, index, size, proof)
    except ProofError:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index, size, proof, bytes(32))
        return
    assert 0 <= index < size and len(proof) == inclusion_proof_length(index, size)
    merkle.verify_inclusion(leaf, index, size, proof, root)
    wrong = bytes([root[0] ^ 1]) + root[1:]
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, index, size, proof, wrong)
    if index + 1 < size and len({leaf, *proof}) == len(proof) + 1:
        # the same proof never places the leaf at a neighbouring index (unless hashes repeat:
        # a leaf equal to its sibling really is at both indexes)
        with pytest.raises(ProofError):
            merkle.verify_inclusion(leaf, index + 1, size, proof, root)


@FAST
@given(size2=big_counts, data=st.data())
def test_consistency_at_huge_sizes_accepts_only_the_root_it_computes(
    size2: int, data: st.DataObject
) -> None:
    size1 = data.draw(st.integers(1, size2))
    root1 = data.draw(st.binary(min_size=32, max_size=32))
    n = consistency_proof_length(size1, size2) if size1 < size2 else 0
    n = max(n + data.draw(st.sampled_from([0, 0, 0, -1, 1])), 0)
    proof = data.draw(st.lists(st.binary(min_size=32, max_size=32), min_size=n, max_size=n))
    try:
        root2 = root_from_consistency_proof(size1, size2, proof, root1)
    except ProofError:
        return
    merkle.verify_consistency(size1, size2, proof, root1, root2)
    with pytest.raises(ProofError):
        merkle.verify_consistency(size1, size2, proof, root1, bytes([root2[0] ^ 1]) + root2[1:])
    if size1 < size2:  # the proof recomputes root1 too: another old root never passes
        with pytest.raises(ProofError):
            merkle.verify_consistency(size1, size2, proof, bytes([root1[0] ^ 1]) + root1[1:], root2)


@FAST
@given(bad=out_of_range, which=st.sampled_from(["index", "size", "size1", "size2"]))
def test_counts_outside_0_to_2_64_are_proof_errors(bad: int, which: str) -> None:
    h = bytes(32)
    with pytest.raises(ProofError):
        if which in ("index", "size"):
            args = {"index": 0, "size": 1, which: bad}
            merkle.verify_inclusion(h, args["index"], args["size"], [], h)
        else:
            sizes = {"size1": 1, "size2": 2, which: bad}
            merkle.verify_consistency(sizes["size1"], sizes["size2"], [h], h, h)


# ---- proof files: byte-level edits of a real, valid file ------------------------------------


def test_every_truncation_of_a_good_proof_file_fails_format() -> None:
    for cut in range(len(GOOD)):
        with pytest.raises(VerificationFailed):
            WORLD.verify(GOOD[:cut])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    position=st.integers(0, 10**6),
    edit=st.sampled_from(["flip", "set", "delete", "insert", "swap"]),
    byte=st.integers(0, 255),
)
def test_single_byte_edits_of_a_good_proof_file_are_rejected_or_claim_the_same(
    position: int, edit: str, byte: int
) -> None:
    data = bytearray(GOOD)
    i = position % len(data)
    if edit == "flip":
        data[i] ^= 1 << (byte % 8)
    elif edit == "set":
        data[i] = byte
    elif edit == "delete":
        del data[i]
    elif edit == "insert":
        data.insert(i, byte)
    elif i + 1 < len(data):
        data[i], data[i + 1] = data[i + 1], data[i]
    try:
        proven = WORLD.verify(bytes(data), require_ledger=True)
    except VerificationFailed:
        return
    assert bytes(data) == GOOD or claim(proven) == GOOD_CLAIM


@FAST
@given(st.binary(max_size=600) | st.sampled_from([GOOD[:100], GOOD.replace(b'"', b"'")]))
def test_parse_proof_file_raises_only_our_errors(data: bytes) -> None:
    with pytest.raises(PledgewatchError):
        parse_proof_file(data)


# ---- checkpoint notes, receipts, release tokens, log leaves ---------------------------------

ROOT = bytes(range(32))
LOG = "log.example/fuzz"


@st.composite
def checkpoint_bodies(draw: st.DrawFn) -> bytes:
    """Checkpoint texts that are right in every line but (usually) one."""
    origin = draw(
        st.sampled_from([LOG, "", " " + LOG, LOG + "\r", "o\x00", "é"]) | st.text(max_size=8)
    )
    size = draw(
        st.sampled_from(["0", "7", "01", "-1", "+7", " 7", "7 ", "9223372036854775807",
                         "9223372036854775808", "18446744073709551616", "1" * 25, "0x10", "٣"])
    )  # fmt: skip
    b64 = base64.b64encode(ROOT).decode()
    root = draw(
        st.sampled_from([b64, b64.rstrip("="), base64.urlsafe_b64encode(ROOT).decode(),
                         base64.b64encode(ROOT[:31]).decode(), b64 + "\n", " " + b64,
                         base64.b64encode(ROOT + b"x").decode(), b64.replace("A", "a", 1), ""])
    )  # fmt: skip
    extensions = draw(st.lists(st.sampled_from(["ext", "", "a b", "\u2014 x"]), max_size=2))
    text = "\n".join([origin, size, root, *extensions]) + draw(st.sampled_from(["\n", "", "\n\n"]))
    return text.encode("utf-8", "surrogatepass")


@FAST
@given(checkpoint_bodies())
def test_structured_checkpoint_bodies_parse_exactly_or_raise_our_error(body: bytes) -> None:
    try:
        cp = Checkpoint.parse(body)
    except PledgewatchError:
        return
    assert cp.body() == body
    assert 0 <= cp.size <= 2**63 - 1 and len(cp.root) == 32


GOOD_NOTE = sign_checkpoint(Checkpoint(LOG, 7, ROOT), LOG, OWNER).to_bytes()


@FAST
@given(checkpoint_bodies())
def test_a_signature_over_one_body_never_verifies_another(body: bytes) -> None:
    _, _, signatures = GOOD_NOTE.partition(b"\n\n")
    spliced = body + b"\n" + signatures
    if spliced == GOOD_NOTE:
        verify_checkpoint(spliced, LOG, OWNER.public_key, origin=LOG)
        return
    with pytest.raises(PledgewatchError):
        verify_checkpoint(spliced, LOG, OWNER.public_key, origin=LOG)
    with contextlib.suppress(PledgewatchError):
        assert SignedNote.parse(spliced).to_bytes() == spliced


def _receipt_wire() -> bytes:
    items = (
        ReceiptItem("ab" * 32, ReceiptStatus.STORED),
        ReceiptItem("cd" * 32, ReceiptStatus.QUARANTINED, "bad_signature"),
    )
    return sign_receipt(Receipt(OWNER.key_id, "wh-1", "gw-1", 1_767_225_600_000, items), OWNER)


RECEIPT = _receipt_wire()
TOKEN = sign_token(
    ReleaseToken("rel-1", "wh-1", "loan-1", "lot-7", 5, 1_767_225_600_000, 1_767_312_000_000),
    OWNER,
)


@st.composite
def byte_edits(draw: st.DrawFn, good: bytes) -> bytes:
    data = bytearray(good)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["set", "delete", "insert"]))
        if action == "set":
            data[i] = draw(st.integers(0, 255))
        elif action == "delete" and len(data) > 1:
            del data[i]
        else:
            data.insert(i, draw(st.integers(0, 255)))
    return bytes(data)


@FAST
@given(st.data())
def test_mutated_receipts_and_release_tokens_never_verify(data: st.DataObject) -> None:
    """A gateway trusts receipts (they release its outbox) and the anchor trusts release
    tokens: an edited one must never pass, and nothing but our error may escape."""
    for good, parse in ((RECEIPT, parse_receipt), (TOKEN, parse_token)):
        bad = data.draw(byte_edits(good))
        if bad == good:
            continue
        with pytest.raises(PledgewatchError):
            parse(bad, OWNER.public_key)
    with pytest.raises(PledgewatchError):
        parse_receipt(RECEIPT, STRANGER.public_key)
    with pytest.raises(PledgewatchError):
        parse_token(TOKEN, STRANGER.public_key)


RECEIPT_BODY = canonical.decode(RECEIPT)["receipt"]
TOKEN_BODY = canonical.decode(TOKEN)["token"]


def test_version_true_is_not_version_1_in_receipts_and_tokens() -> None:
    """Regression: ``body["v"] != 1`` let ``"v":true`` through (``True == 1`` in Python)."""
    for body, domain, parse, name in (
        (RECEIPT_BODY, RECEIPT_DOMAIN, parse_receipt, "receipt"),
        (TOKEN_BODY, RELEASE_DOMAIN, parse_token, "token"),
    ):
        bad = {**body, "v": True}
        sig = OWNER.sign(domain, canonical.encode(bad)).hex()
        wire = canonical.encode({name: bad, "sig": sig})
        with pytest.raises(PledgewatchError, match=r"receipt v: got True|and v = 1"):
            parse(wire, OWNER.public_key)


RECEIPT_PATHS = ["anchor", "gateway", "items", "ts_ms", "v", "warehouse", "items.0"]
RECEIPT_PATHS += ["items.0.id", "items.0.status", "items.0.reason"]
TOKEN_PATHS = ["expires_ms", "id", "issued_ms", "loan_id", "lot", "qty", "v", "warehouse"]


@pytest.mark.parametrize(
    ("which", "path"),
    [("receipt", p) for p in RECEIPT_PATHS] + [("token", p) for p in TOKEN_PATHS],
)
@settings(max_examples=40, deadline=None)
@given(value=hostile_values)
def test_correctly_signed_but_malformed_receipts_and_tokens_raise_only_our_errors(
    which: str, path: str, value: Any
) -> None:
    """A body signed by the right key may still be malformed (a buggy or hostile signer):
    the reader sees our error, never a crash, and accepts only what it reads back exactly."""
    body = json.loads(json.dumps(RECEIPT_BODY if which == "receipt" else TOKEN_BODY))
    target: Any = body
    keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
    for k in keys[:-1]:
        target = target[k]
    target[keys[-1]] = value
    try:
        signed = canonical.encode(body)
    except EncodingError:
        return
    domain = RECEIPT_DOMAIN if which == "receipt" else RELEASE_DOMAIN
    sig = OWNER.sign(domain, signed).hex()
    try:
        if which == "receipt":
            wire = canonical.encode({"receipt": body, "sig": sig})
            again = parse_receipt(wire, OWNER.public_key).body()
        else:
            wire = canonical.encode({"sig": sig, "token": body})
            again = parse_token(wire, OWNER.public_key).body()
    except PledgewatchError:
        return
    assert canonical.encode(again) == signed  # byte-exact: true is not 1


@FAST
@given(st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_log_leaves_from_arbitrary_bytes_raise_only_our_errors(data: bytes) -> None:
    with pytest.raises(PledgewatchError):
        parse_leaf(data)


# ---- the anchor's per-message verification ---------------------------------------------------

INGEST_KEYS = {
    k.key_id: RegisteredKey(k.key_id, "wh-1", gw, k.public_key, 0, None)
    for k, gw in ((OWNER, "gw-1"), (STRANGER, "gw-2"))
}
GOOD_TOPIC = "pledgewatch/v1/wh-1/gw-1/events"
topics = st.one_of(
    st.just(GOOD_TOPIC),
    st.sampled_from(
        ["pledgewatch/v1/wh-1/gw-2/events", "pledgewatch/v1/wh-1/gw-1/receipts",
         "pledgewatch/v1/wh-1/gw-1/events/", "pledgewatch/v1/wh-1/+/events",
         "pledgewatch/v1/WH-1/gw-1/events", "pledgewatch/v1/wh-1/gw-1\x00/events", "", "/"]
    ),
    st.text(max_size=80),
    st.lists(st.text(max_size=8), max_size=7).map("/".join),
)  # fmt: skip


@FAST
@given(topic=topics, payload=st.one_of(st.binary(max_size=300), st.builds(lambda: GOOD_WIRE)))
def test_ingest_verification_answers_every_message_and_accepts_only_the_good_one(
    topic: str, payload: bytes
) -> None:
    """``Ingestor.verify_all`` runs on raw broker input before any transaction: it must turn
    every message into an event or a refusal with a reason, and raise nothing."""
    (outcome,) = Ingestor(INGEST_KEYS, "w").verify_all([Message(topic, payload)])
    if isinstance(outcome, SignedEvent):
        assert (topic, payload) == (GOOD_TOPIC, GOOD_WIRE)
    else:
        assert isinstance(outcome.reason, Reject) and outcome.detail


@FAST
@given(edit=st.builds(lambda: GOOD_WIRE).flatmap(byte_edits))
def test_ingest_verification_refuses_every_edit_of_a_good_message(edit: bytes) -> None:
    (outcome,) = Ingestor(INGEST_KEYS, "w").verify_all([Message(GOOD_TOPIC, edit)])
    assert isinstance(outcome, SignedEvent) == (edit == GOOD_WIRE)
