"""The gateway's Ed25519 key on disk.

File format (text, UTF-8)::

    pledgewatch-ed25519-seed-v1
    <64 lowercase hex digits: the 32-byte RFC 8032 seed>

The file is created with mode 0600 and refused if group or others can read it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.errors import KeyStoreError
from pledgewatch.signing import SigningKey

HEADER = "pledgewatch-ed25519-seed-v1"


def generate(path: Path, *, overwrite: bool = False) -> SigningKey:
    """Create a new key file (0600). Refuses to replace an existing key unless told to."""
    if path.exists() and not overwrite:
        raise KeyStoreError(f"{path} already exists; refusing to replace a gateway key")
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{HEADER}\n{key.seed().hex()}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return key


def load(path: Path) -> SigningKey:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyStoreError(f"cannot read gateway key {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyStoreError(f"gateway key {path} is not text") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(
            f"gateway key {path} has mode {stat.S_IMODE(mode):o}, want 600 (chmod 600 {path})"
        )
    lines = text.splitlines()
    if len(lines) != 2 or lines[0] != HEADER:
        raise KeyStoreError(f"gateway key {path}: want 2 lines, the first {HEADER!r}")
    seed = lines[1].strip()
    if len(seed) != 64 or any(c not in "0123456789abcdef" for c in seed):
        raise KeyStoreError(f"gateway key {path}: line 2 must be 64 lowercase hex digits")
    return SigningKey(bytes.fromhex(seed))
