"""API tokens: 32 random bytes shown once, stored only as their SHA-256, each with a user and
a role.

The token text is ``pwt_`` + the 32 bytes in unpadded base64url (47 characters). The store
keeps ``SHA-256(the 32 bytes)``: a token is found by hashing what the caller presents, so a
leaked copy of the store holds nothing that opens the API, and the lookup does not compare
secrets byte by byte (the hash is the key). Roles are ordered: an ``officer`` may do all a
``viewer`` may, and acknowledge alerts. Revoking is final; a revoked token fails like an
unknown one (the caller is not told which, so a stolen list of revoked tokens reveals nothing).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
import secrets
from dataclasses import dataclass

from anchor.errors import AnchorError
from anchor.store.api_schema import API_LOCK_ID
from anchor.store.db import Database

PREFIX = "pwt_"
TOKEN_BYTES = 32
MAX_USER = 100
_USER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")
_TOKEN_TEXT = re.compile(r"pwt_[A-Za-z0-9_-]{43}")


class TokenError(AnchorError):
    """A token command was refused (bad user name, unknown user)."""


class Role(enum.Enum):
    VIEWER = "viewer"  # reads everything
    OFFICER = "officer"  # reads, and acknowledges alerts

    def allows(self, needed: Role) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.VIEWER: 1, Role.OFFICER: 2}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who an accepted token belongs to."""

    user: str
    role: Role
    token_id: str


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    user: str
    role: Role
    created_ms: int
    revoked_ms: int | None


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly made token: ``text`` is shown to the operator once and stored nowhere."""

    text: str
    info: TokenInfo


def check_user(user: str) -> str:
    if _USER.fullmatch(user) is None:
        raise TokenError(
            f"user: got {user!r}, want 1..{MAX_USER} of letters, digits and . _ @ - "
            "(starting with a letter or digit)"
        )
    return user


def token_hash(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


def decode(text: str) -> bytes | None:
    """The 32 bytes of a well-formed token text, else ``None``."""
    if _TOKEN_TEXT.fullmatch(text) is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text[len(PREFIX) :] + "=")
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == TOKEN_BYTES else None


def add(db: Database, user: str, role: Role, now_ms: int) -> NewToken:
    raw = secrets.token_bytes(TOKEN_BYTES)
    digest = token_hash(raw)
    info = TokenInfo(digest.hex()[:8], check_user(user), role, now_ms, None)
    with db.transaction() as tx:
        tx.lock(API_LOCK_ID)
        tx.execute(
            "INSERT INTO api_tokens (token_hash, token_id, user_name, role, created_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            (digest, info.token_id, info.user, role.value, now_ms),
        )
    text = PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return NewToken(text, info)


def revoke(db: Database, user: str, now_ms: int) -> int:
    """Revoke every active token of ``user``; how many. ``TokenError`` if it had none."""
    with db.transaction() as tx:
        tx.lock(API_LOCK_ID)
        rows = tx.all(
            "SELECT token_hash FROM api_tokens WHERE user_name = ? AND revoked_ms IS NULL",
            (user,),
        )
        if not rows:
            raise TokenError(f"user {user!r} has no active API token")
        tx.execute(
            "UPDATE api_tokens SET revoked_ms = ? WHERE user_name = ? AND revoked_ms IS NULL",
            (now_ms, user),
        )
    return len(rows)


def list_tokens(db: Database) -> list[TokenInfo]:
    rows = db.read().all(
        "SELECT token_id, user_name, role, created_ms, revoked_ms FROM api_tokens"
        " ORDER BY created_ms, token_id"
    )
    return [
        TokenInfo(str(t), str(u), Role(r), int(c), None if v is None else int(v))
        for t, u, r, c, v in rows
    ]


def authenticate(db: Database, text: str) -> Caller | None:
    """The caller of an active token, or ``None`` (malformed, unknown or revoked)."""
    raw = decode(text)
    if raw is None:
        return None
    row = db.read().one(
        "SELECT user_name, role, token_id FROM api_tokens"
        " WHERE token_hash = ? AND revoked_ms IS NULL",
        (token_hash(raw),),
    )
    if row is None:
        return None
    return Caller(str(row[0]), Role(row[1]), str(row[2]))
