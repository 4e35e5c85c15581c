"""C2SP checkpoints, signed notes and Ed25519 cosignatures, byte for byte.

Implements c2sp.org/tlog-checkpoint (v1.0.0), c2sp.org/signed-note (v1.0.0, Ed25519 type
0x01) and c2sp.org/tlog-cosignature (``cosignature/v1``, Ed25519 type 0x04); where the specs
leave a choice, golang.org/x/mod/sumdb/note is the reference behaviour. ``\\n`` is the byte
0x0A, ``||`` concatenation, base64 is RFC 4648 §4 (standard alphabet, ``=`` padding).

Checkpoint body (the note text)::

    <origin> \\n
    <size: ASCII decimal, no leading zeros; "0" for the empty tree> \\n
    <base64 of the 32-byte RFC 6962 root hash> \\n
    <extension line> \\n          (zero or more, each non-empty)

Signed note::

    <note text, ending in \\n> \\n <signature line>+
    signature line = E2 80 94 (U+2014 EM DASH) 20 <key name> 20 base64(key hash || signature) \\n

Key hash (4 bytes; the "key ID" of the spec)::

    SHA-256(<key name> || \\n || <signature type byte> || <32-byte Ed25519 public key>)[0:4]

- type ``0x01`` (``SIG_TYPE_ED25519``): ``signature`` = Ed25519 over the note text itself.
- type ``0x04`` (``SIG_TYPE_COSIGNATURE_V1``): ``signature`` = ``timestamp (u64 big-endian)
  || Ed25519(cosigned message)`` with the cosigned message
  ``"cosignature/v1\\n" || "time " || <timestamp in decimal> || "\\n" || <note text>``.

A verifier key ("vkey") is the text ``<name>+<8 hex digits of the key hash>+base64(<type
byte> || <public key>)``.

Everything here is pure (no I/O, no clock). Untrusted input raises only ``EncodingError``
(bytes not in the one accepted spelling), ``ValidationError`` (well-formed but breaking a
rule), ``SignatureError`` (no signature by the wanted key, or one that does not verify) and
``ProofError`` (a verified checkpoint that is not the one the caller expects).
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pledgewatch.errors import EncodingError, ProofError, SignatureError, ValidationError
from pledgewatch.signing import PUBLIC_KEY_SIZE, SIGNATURE_SIZE, SigningKey, ed25519_verify

CHECKPOINT_SPEC = "c2sp.org/tlog-checkpoint@v1.0.0"
SIGNED_NOTE_SPEC = "c2sp.org/signed-note@v1.0.0"
COSIGNATURE_SPEC = "c2sp.org/tlog-cosignature (cosignature/v1, Ed25519)"

SIG_TYPE_ED25519 = 0x01
SIG_TYPE_COSIGNATURE_V1 = 0x04
SIGNATURE_LINE_PREFIX = "\u2014 ".encode()  # b"\xe2\x80\x94 "
COSIGNATURE_V1_HEADER = b"cosignature/v1\n"
COSIGNATURE_TIME_PREFIX = b"time "
KEY_HASH_SIZE = 4
TIMESTAMP_SIZE = 8
ROOT_SIZE = 32
COSIGNATURE_V1_SIZE = TIMESTAMP_SIZE + SIGNATURE_SIZE  # 72 bytes after the key hash
MAX_TREE_SIZE = 2**63 - 1
MAX_TIMESTAMP = 2**63 - 1
MAX_NOTE_BYTES = 128 * 1024
MAX_SIGNATURES = 100

# The Unicode White_Space property (what Go's unicode.IsSpace tests): not allowed in key names.
_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_HEX8 = re.compile(r"[0-9a-f]{8}")
# The C2SP formats carry their own domain separation (a note signature covers the note text
# exactly, as the spec requires; a cosignature's message starts "cosignature/v1\n"), so the
# pledgewatch signing prefix is empty. Use a note key for notes only.
_NO_PREFIX = b""


class NoteKeyType(enum.IntEnum):
    """Signature type bytes of c2sp.org/signed-note that pledgewatch uses."""

    ED25519 = SIG_TYPE_ED25519
    COSIGNATURE_V1 = SIG_TYPE_COSIGNATURE_V1


def b64encode(data: bytes) -> str:
    """Standard, padded base64 (RFC 4648 §4)."""
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def b64decode(text: str, what: str) -> bytes:
    """Decode base64 that is exactly what ``b64encode`` writes, or raise ``EncodingError``.

    Refuses other alphabets, missing or extra padding, whitespace and non-zero padding bits,
    so that every value has one spelling.
    """
    if _BASE64.fullmatch(text) is None:
        raise EncodingError(f"{what}: not standard padded base64: {text[:80]!r}")
    try:
        data = binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error as exc:
        raise EncodingError(f"{what}: not valid base64: {exc}") from None
    if b64encode(data) != text:
        raise EncodingError(f"{what}: non-canonical base64 (padding bits set): {text[:80]!r}")
    return data


def check_key_name(name: object) -> str:
    """A note key name: non-empty text without Unicode spaces, ``+`` or control characters."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"key name: got {name!r}, want non-empty text")
    bad = next((c for c in name if c in _SPACES or c == "+" or c < " "), None)
    if bad is not None:
        raise ValidationError(f"key name {name!r}: contains {bad!r} (spaces and '+' not allowed)")
    _utf8(name, "key name")
    return name


def note_key_hash(name: str, key_type: int, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || key_type || public_key)[0:4]``."""
    check_key_name(name)
    _public_key(public_key)
    if key_type not in (SIG_TYPE_ED25519, SIG_TYPE_COSIGNATURE_V1):
        raise ValidationError(f"signature type: got {key_type:#04x}, want 0x01 or 0x04")
    return hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()[:4]


@dataclass(frozen=True, slots=True)
class NoteVerifier:
    """A trusted note key: its name, Ed25519 public key and type; ``key_hash`` is derived."""

    name: str
    public_key: bytes
    kind: NoteKeyType
    key_hash: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key_hash", note_key_hash(self.name, self.kind, self.public_key))

    @classmethod
    def ed25519(cls, name: str, public_key: bytes) -> NoteVerifier:
        return cls(name, public_key, NoteKeyType.ED25519)

    @classmethod
    def cosignature_v1(cls, name: str, public_key: bytes) -> NoteVerifier:
        return cls(name, public_key, NoteKeyType.COSIGNATURE_V1)

    def vkey(self) -> str:
        """``name+<key hash, 8 hex>+base64(type || public key)``."""
        material = b64encode(bytes([self.kind]) + self.public_key)
        return f"{self.name}+{self.key_hash.hex()}+{material}"

    @classmethod
    def from_vkey(cls, text: str) -> NoteVerifier:
        """Parse a vkey of type 0x01 or 0x04; the key hash in it must be the right one."""
        parts = text.split("+", 2) if isinstance(text, str) else []
        if len(parts) != 3 or _HEX8.fullmatch(parts[1]) is None:
            raise EncodingError(f"vkey: want name+<8 lowercase hex>+<base64>, got {text!r}")
        name, hash_hex, material = parts
        raw = b64decode(material, "vkey key material")
        if len(raw) != 1 + PUBLIC_KEY_SIZE or raw[0] not in (
            SIG_TYPE_ED25519,
            SIG_TYPE_COSIGNATURE_V1,
        ):
            raise ValidationError("vkey: want a type byte 0x01 or 0x04 and a 32-byte Ed25519 key")
        verifier = cls(name, raw[1:], NoteKeyType(raw[0]))
        if verifier.key_hash.hex() != hash_hex:
            raise ValidationError(
                f"vkey key hash: got {hash_hex}, want {verifier.key_hash.hex()} for this key"
            )
        return verifier

    def matches(self, signature: NoteSignature) -> bool:
        return signature.name == self.name and signature.key_hash == self.key_hash


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A log's tree head: "the log ``origin`` has ``size`` entries with RFC 6962 ``root``"."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _text_line(self.origin, "checkpoint origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            raise ValidationError(f"checkpoint size: got {self.size!r}, want an integer")
        if not 0 <= self.size <= MAX_TREE_SIZE:
            raise ValidationError(f"checkpoint size: got {self.size}, want 0..2**63-1")
        if not isinstance(self.root, bytes) or len(self.root) != ROOT_SIZE:
            raise ValidationError(f"checkpoint root: want {ROOT_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise ValidationError("checkpoint extensions: want a tuple of lines")
        for line in self.extensions:
            _text_line(line, "checkpoint extension line")

    def body(self) -> bytes:
        """The note text: origin, size, root and extension lines, each ending in ``\\n``."""
        lines = [self.origin, str(self.size), b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines).encode()

    @classmethod
    def parse(cls, body: bytes) -> Checkpoint:
        """Parse a note text that ``body()`` would produce exactly, else raise."""
        text = _note_text(body, "checkpoint")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise EncodingError(f"checkpoint: got {len(lines)} line(s), want at least 3")
        origin, size, root, *extensions = lines
        if not origin or "" in extensions:
            raise ValidationError("checkpoint: empty origin or extension line (want non-empty)")
        if _DECIMAL.fullmatch(size) is None:
            raise EncodingError(f"checkpoint size: got {size[:40]!r}, want decimal, no leading 0")
        root_bytes = b64decode(root, "checkpoint root")
        if len(root_bytes) != ROOT_SIZE:
            raise ValidationError(f"checkpoint root: got {len(root_bytes)} bytes, want 32")
        return cls(origin, int(size), root_bytes, tuple(extensions))


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line: ``— <name> base64(key_hash || signature)``."""

    name: str
    key_hash: bytes
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.key_hash, bytes) or len(self.key_hash) != KEY_HASH_SIZE:
            raise ValidationError(f"signature key hash: want {KEY_HASH_SIZE} bytes")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise ValidationError("signature: want at least 1 byte")

    def line(self) -> bytes:
        """``E2 80 94 20 <name> 20 base64(key_hash || signature) 0A``."""
        payload = b64encode(self.key_hash + self.signature)
        return SIGNATURE_LINE_PREFIX + f"{self.name} {payload}\n".encode()

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        """Parse one line (without its ``\\n``) of a signature block."""
        if not line.startswith("\u2014 "):
            raise EncodingError(f"signature line: want '\u2014 ' first, got {line[:40]!r}")
        name, sep, payload = line[2:].partition(" ")
        if not sep:
            raise EncodingError(f"signature line: want '\u2014 name base64', got {line[:80]!r}")
        raw = b64decode(payload, f"signature by {name!r}")
        if len(raw) <= KEY_HASH_SIZE:
            raise ValidationError(f"signature by {name!r}: got {len(raw)} bytes, want > 4")
        return cls(name, raw[:KEY_HASH_SIZE], raw[KEY_HASH_SIZE:])


@dataclass(frozen=True, slots=True)
class SignedNote:
    """A note text and its signatures (at most one per key name and key hash)."""

    body: bytes
    signatures: tuple[NoteSignature, ...]

    def __post_init__(self) -> None:
        _note_text(self.body, "note text")
        if not isinstance(self.signatures, tuple) or not self.signatures:
            raise ValidationError("signed note: want a tuple of at least one signature")
        if len(self.signatures) > MAX_SIGNATURES:
            raise ValidationError(f"signed note: {len(self.signatures)} signatures, limit 100")
        seen: set[tuple[str, bytes]] = set()
        for sig in self.signatures:
            if not isinstance(sig, NoteSignature):
                raise ValidationError("signed note: signatures must be NoteSignature values")
            if (sig.name, sig.key_hash) in seen:
                raise ValidationError(
                    f"signed note: two signatures by {sig.name}+{sig.key_hash.hex()}"
                )
            seen.add((sig.name, sig.key_hash))

    def to_bytes(self) -> bytes:
        """``body || \\n || line(sig 1) || … || line(sig n)``."""
        return self.body + b"\n" + b"".join(sig.line() for sig in self.signatures)

    @classmethod
    def parse(cls, data: bytes) -> SignedNote:
        """Parse bytes that ``to_bytes()`` would produce exactly, else raise.

        The text ends at the last blank line (as the spec says); the signature block after it
        must be non-empty and end in ``\\n``.
        """
        text = _note_text(data, "signed note")
        split = text.rfind("\n\n")
        if split < 0:
            raise EncodingError("signed note: no blank line before the signatures")
        body, block = text[: split + 1], text[split + 2 :]
        if not block:
            raise EncodingError("signed note: no signature lines after the blank line")
        return cls(body.encode(), parse_signature_lines(block.encode()))

    def find(self, verifier: NoteVerifier) -> NoteSignature:
        """The signature by ``verifier``'s key (name and key hash), or ``SignatureError``."""
        for sig in self.signatures:
            if verifier.matches(sig):
                return sig
        have = ", ".join(f"{s.name}+{s.key_hash.hex()}" for s in self.signatures)
        raise SignatureError(
            f"no signature by {verifier.name}+{verifier.key_hash.hex()} (have: {have})"
        )


def parse_signature_lines(data: bytes) -> tuple[NoteSignature, ...]:
    """Parse a block of one or more signature lines (each ending in ``\\n``).

    This is also the body of a witness's ``add-checkpoint`` answer.
    """
    text = _note_text(data, "signature lines")
    lines = text[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise ValidationError(f"signature lines: got {len(lines)}, limit {MAX_SIGNATURES}")
    return tuple(NoteSignature.parse_line(line) for line in lines)


def sign_note(body: bytes, name: str, key: SigningKey) -> NoteSignature:
    """An Ed25519 (type 0x01) note signature over ``body`` exactly."""
    _note_text(body, "note text")
    verifier = NoteVerifier.ed25519(name, key.public_key)
    return NoteSignature(name, verifier.key_hash, key.sign(_NO_PREFIX, body))


def sign_checkpoint(checkpoint: Checkpoint, name: str, key: SigningKey) -> SignedNote:
    """The checkpoint as a signed note with one Ed25519 signature by ``name``."""
    body = checkpoint.body()
    return SignedNote(body, (sign_note(body, name, key),))


def verify_note(note: SignedNote, name: str, public_key: bytes) -> None:
    """Check the Ed25519 (type 0x01) signature by ``name``/``public_key``; others are ignored."""
    verifier = NoteVerifier.ed25519(name, public_key)
    sig = note.find(verifier)
    if len(sig.signature) != SIGNATURE_SIZE:
        raise SignatureError(
            f"signature by {name}: got {len(sig.signature)} bytes, want {SIGNATURE_SIZE}"
        )
    try:
        ed25519_verify(public_key, note.body, sig.signature)
    except SignatureError:
        raise SignatureError(
            f"signature by {name}+{verifier.key_hash.hex()} does not verify"
        ) from None


def verify_checkpoint(
    note: bytes, name: str, public_key: bytes, *, origin: str | None = None
) -> Checkpoint:
    """Parse a signed checkpoint, verify the log's signature, return the checkpoint.

    Raises ``EncodingError``/``ValidationError`` for malformed bytes, ``SignatureError`` when
    the log's signature is missing or wrong, and ``ProofError`` when ``origin`` is given and
    the checkpoint names another log. The text is parsed as a checkpoint only after its
    signature verified.
    """
    signed = SignedNote.parse(note)
    verify_note(signed, name, public_key)
    checkpoint = Checkpoint.parse(signed.body)
    if origin is not None and checkpoint.origin != origin:
        raise ProofError(
            f"checkpoint origin: got {checkpoint.origin!r}, want {origin!r}",
            expected=origin,
            computed=checkpoint.origin,
        )
    return checkpoint


def cosignature_message(body: bytes, timestamp_s: int) -> bytes:
    """``cosignature/v1\\n`` || ``time <timestamp_s>\\n`` || checkpoint body."""
    Checkpoint.parse(body)
    _timestamp(timestamp_s)
    return COSIGNATURE_V1_HEADER + COSIGNATURE_TIME_PREFIX + b"%d\n" % timestamp_s + body


def cosign(body: bytes, name: str, key: SigningKey, timestamp_s: int) -> NoteSignature:
    """A ``cosignature/v1`` (type 0x04) signature line over a checkpoint body.

    The signature bytes are ``timestamp_s`` as 8 bytes big-endian followed by the 64-byte
    Ed25519 signature of ``cosignature_message(body, timestamp_s)``.
    """
    message = cosignature_message(body, timestamp_s)
    verifier = NoteVerifier.cosignature_v1(name, key.public_key)
    signature = key.sign(_NO_PREFIX, message)
    return NoteSignature(name, verifier.key_hash, timestamp_s.to_bytes(8, "big") + signature)


def verify_cosignature(note: SignedNote, name: str, public_key: bytes) -> int:
    """Verify the cosignature by ``name``/``public_key`` on a checkpoint; return its timestamp.

    The caller decides whether the timestamp is acceptable (this module has no clock).
    """
    verifier = NoteVerifier.cosignature_v1(name, public_key)
    sig = note.find(verifier)
    if len(sig.signature) != COSIGNATURE_V1_SIZE:
        raise SignatureError(
            f"cosignature by {name}: got {len(sig.signature)} bytes, want {COSIGNATURE_V1_SIZE}"
        )
    timestamp = int.from_bytes(sig.signature[:TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise SignatureError(f"cosignature by {name}: timestamp {timestamp} exceeds 2**63-1")
    message = cosignature_message(note.body, timestamp)
    try:
        ed25519_verify(public_key, message, sig.signature[TIMESTAMP_SIZE:])
    except SignatureError:
        raise SignatureError(
            f"cosignature by {name}+{verifier.key_hash.hex()} (time {timestamp}) does not verify"
        ) from None
    return timestamp


def with_signatures(note: SignedNote, extra: Iterable[NoteSignature]) -> SignedNote:
    """``note`` with ``extra`` appended; an extra signature replaces an existing one by the
    same key (name and key hash), as golang.org/x/mod/sumdb/note's ``Sign`` does."""
    added = tuple(extra)
    replaced = {(sig.name, sig.key_hash) for sig in added}
    kept = tuple(s for s in note.signatures if (s.name, s.key_hash) not in replaced)
    return SignedNote(note.body, kept + added)


def _note_text(data: object, what: str) -> str:
    """Decode note bytes: UTF-8, at most MAX_NOTE_BYTES, no control character but ``\\n``,
    ending in ``\\n``."""
    if not isinstance(data, bytes):
        raise EncodingError(f"{what}: want bytes, got {type(data).__name__}")
    if len(data) > MAX_NOTE_BYTES:
        raise EncodingError(f"{what}: {len(data)} bytes, limit {MAX_NOTE_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EncodingError(f"{what}: not valid UTF-8 ({exc.reason} at {exc.start})") from None
    bad = next((i for i, c in enumerate(text) if c < " " and c != "\n"), None)
    if bad is not None:
        raise EncodingError(f"{what}: control character {text[bad]!r} at offset {bad}")
    if not text.endswith("\n"):
        raise EncodingError(f"{what}: want a final newline")
    return text


def _text_line(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValidationError(f"{what}: got {value!r}, want non-empty text")
    if any(c < " " for c in value):
        raise ValidationError(f"{what}: contains a control character or newline: {value!r}")
    _utf8(value, what)


def _utf8(value: str, what: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what}: not valid Unicode (lone surrogate)") from None


def _public_key(public_key: object) -> None:
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise SignatureError(f"public key: want {PUBLIC_KEY_SIZE} bytes")


def _timestamp(timestamp_s: object) -> None:
    if not isinstance(timestamp_s, int) or isinstance(timestamp_s, bool):
        raise ValidationError(f"cosignature timestamp: got {timestamp_s!r}, want an integer")
    if not 0 <= timestamp_s <= MAX_TIMESTAMP:
        raise ValidationError(f"cosignature timestamp: got {timestamp_s}, want 0..2**63-1")
