"""The gateway's Ed25519 key on disk, in the ``pledgewatch.seedfile`` format.

The file is created with mode 0600 and refused if group or others can read it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from gateway.errors import KeyStoreError
from pledgewatch.errors import ValidationError
from pledgewatch.seedfile import decode_seed_file, encode_seed_file
from pledgewatch.signing import SigningKey


def generate(path: Path, *, overwrite: bool = False) -> SigningKey:
    """Create a new key file (0600). Refuses to replace an existing key unless told to."""
    if path.exists() and not overwrite:
        raise KeyStoreError(f"{path} already exists; refusing to replace a gateway key")
    key = SigningKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, encode_seed_file(key))
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
    try:
        return decode_seed_file(text, f"gateway key {path}")
    except ValidationError as exc:
        raise KeyStoreError(str(exc)) from None
