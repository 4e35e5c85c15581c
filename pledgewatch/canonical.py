"""Canonical bytes: the JSON subset every signed or hashed pledgewatch structure uses.

The encoding is a strict subset of RFC 8785 (JSON Canonicalization Scheme), chosen so that any
language can reproduce it byte for byte:

* values are objects, arrays, strings, integers, ``true``, ``false`` and ``null`` — no floats;
* integers lie in ``[-(2**53 - 1), 2**53 - 1]`` so that JCS's number rule (ECMAScript
  ``Number.prototype.toString``) and plain decimal agree: written as ``-?(0|[1-9][0-9]*)``;
* object keys are ASCII strings; members are sorted by key (ASCII code order, which equals
  JCS's UTF-16 code-unit order for ASCII), and a key appears at most once;
* no whitespace: ``,`` and ``:`` separate, nothing else;
* strings are UTF-8; ``"`` and ``\\`` are escaped as ``\\"`` and ``\\\\``; U+0008, U+0009,
  U+000A, U+000C, U+000D as ``\\b \\t \\n \\f \\r``; every other code point below U+0020 as
  ``\\u00xx`` (lowercase hex); everything else is written as itself. Lone surrogates are
  refused;
* nesting is at most ``MAX_DEPTH`` containers deep.

``decode`` accepts only bytes that ``encode`` would produce, so one value has exactly one
encoding and a hash of the bytes is a hash of the value.
"""

from __future__ import annotations

import json
from typing import Any

from pledgewatch.errors import EncodingError

MAX_SAFE_INT = 2**53 - 1
MAX_DEPTH = 16
DEFAULT_MAX_BYTES = 64 * 1024

_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
)


def encode(value: object) -> bytes:
    """Return the canonical bytes of ``value`` or raise ``EncodingError`` naming the bad part."""
    _check(value, "$", 0)
    try:
        return _ENCODER.encode(value).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodingError(f"string is not valid Unicode (lone surrogate?): {exc}") from None


def decode(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Parse canonical bytes; refuse anything ``encode`` would not have produced exactly.

    Raises ``EncodingError`` for: more than ``max_bytes``, invalid UTF-8, invalid JSON,
    duplicate keys, floats, NaN/Infinity, integers out of range, non-ASCII keys, nesting deeper
    than ``MAX_DEPTH``, and any non-canonical spelling (whitespace, key order, escapes).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise EncodingError(f"canonical input must be bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise EncodingError(f"input is {len(data)} bytes, limit is {max_bytes}")
    if _too_deep(bytes(data)):
        raise EncodingError(f"input nests deeper than {MAX_DEPTH}")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError(f"input is not valid UTF-8: {exc}") from None
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_float=_refuse_float,
            parse_constant=_refuse_constant,
        )
    except EncodingError:
        raise
    except (ValueError, RecursionError) as exc:
        raise EncodingError(f"input is not valid JSON: {exc}") from None
    again = encode(value)
    if again != data:
        raise EncodingError("input is valid JSON but not in canonical form")
    return value


def _too_deep(data: bytes) -> bool:
    """Depth check *before* parsing: the stdlib parser recurses once per level, and a process
    whose recursion limit was raised (web3's dependencies do that) can crash on deep input.
    Fast path: fewer opening brackets than the limit cannot nest deeper than it."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return False
    depth = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


def _check(value: object, path: str, depth: int) -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            raise EncodingError(
                f"{path}: integer out of range: got {_show_int(value)}, want |n| <= 2**53-1"
            )
        return
    if isinstance(value, dict | list | tuple):
        if depth >= MAX_DEPTH:
            raise EncodingError(f"{path}: nested deeper than {MAX_DEPTH}")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str) or not key.isascii():
                    raise EncodingError(f"{path}: object key must be an ASCII string, got {key!r}")
                _check(item, f"{path}.{key}", depth + 1)
        else:
            for i, item in enumerate(value):
                _check(item, f"{path}[{i}]", depth + 1)
        return
    raise EncodingError(f"{path}: type {type(value).__name__} is not allowed in canonical data")


def _show_int(value: int) -> str:
    """The integer for a message: ``str()`` refuses more than 4300 digits (ValueError)."""
    if value.bit_length() <= 256:
        return str(value)
    return f"a {value.bit_length()}-bit integer"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in pairs:
        if key in out:
            raise EncodingError(f"duplicate object key {key!r}")
        out[key] = item
    return out


def _refuse_float(text: str) -> Any:
    raise EncodingError(f"floats are not allowed in canonical data, got {text}")


def _refuse_constant(text: str) -> Any:
    raise EncodingError(f"{text} is not allowed in canonical data")
