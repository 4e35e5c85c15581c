"""Canonical bytes: golden vectors, strict decoding, and hostile input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pledgewatch import canonical
from pledgewatch.errors import EncodingError, PledgewatchError

VECTORS = json.loads((Path(__file__).parent / "vectors" / "canonical.json").read_text())


@pytest.mark.parametrize("case", VECTORS["accept"], ids=lambda c: c["canonical"][:30])
def test_golden_vector_encodes_exactly(case: dict[str, str]) -> None:
    want = case["canonical"].encode("utf-8")
    assert canonical.encode(json.loads(case["input"])) == want
    assert canonical.encode(canonical.decode(want)) == want


@pytest.mark.parametrize("case", VECTORS["reject_json"], ids=lambda c: c["why"])
def test_decode_rejects(case: dict[str, str]) -> None:
    with pytest.raises(EncodingError):
        canonical.decode(case["input"].encode("utf-8"))


@pytest.mark.parametrize("case", VECTORS["reject_bytes_hex"], ids=lambda c: c["why"])
def test_decode_rejects_bad_bytes(case: dict[str, str]) -> None:
    with pytest.raises(EncodingError):
        canonical.decode(bytes.fromhex(case["input"]))


@pytest.mark.parametrize(
    "value",
    [1.0, float("nan"), 2**53, -(2**53), {1: "x"}, {"é": 1}, {"a": object()}, "\ud800", b"x"],
    ids=repr,
)
def test_encode_refuses_values_outside_the_subset(value: object) -> None:
    with pytest.raises(EncodingError):
        canonical.encode(value)


def test_decode_limits_size_before_parsing() -> None:
    with pytest.raises(EncodingError, match="limit"):
        canonical.decode(b'"' + b"a" * 100 + b'"', max_bytes=50)


def test_decode_survives_pathological_nesting_and_numbers() -> None:
    for data in (b"[" * 50_000, b"1" * 5000, b'{"a":' * 1000 + b"1" + b"}" * 1000):
        with pytest.raises(EncodingError):
            canonical.decode(data, max_bytes=1 << 20)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-canonical.MAX_SAFE_INT, max_value=canonical.MAX_SAFE_INT)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.text(alphabet=st.characters(max_codepoint=127), max_size=5), children, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_round_trip_and_uniqueness(value: object) -> None:
    try:
        data = canonical.encode(value)
    except EncodingError:
        return  # lone surrogates in generated text, or nesting beyond MAX_DEPTH
    assert canonical.decode(data, max_bytes=1 << 20) == value
    # The standard library's own canonical-looking encoding agrees byte for byte.
    assert (
        data
        == json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    )


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_our_error(data: bytes) -> None:
    try:
        value = canonical.decode(data)
    except PledgewatchError:
        return
    assert canonical.encode(value) == data


def test_deep_nesting_is_refused_before_parsing_even_with_a_raised_recursion_limit() -> None:
    # Regression: web3's dependencies raise the recursion limit to 100,000 process-wide; then
    # json.loads("[" * 100_000) overflows the C stack and kills the process.
    import subprocess
    import sys

    probe = (
        "import sys; sys.setrecursionlimit(100_000)\n"
        "from pledgewatch import canonical\n"
        "try:\n    canonical.decode(b'[' * 100_000 + b']' * 100_000, max_bytes=1 << 20)\n"
        "except canonical.EncodingError as exc:\n    print('refused:', exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "refused: input nests deeper than 16" in result.stdout
