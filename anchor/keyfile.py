"""Ed25519 keys of the bank side (witness, anchor) on disk.

File format (text, UTF-8), the same as the gateway's key file::

    pledgewatch-ed25519-seed-v1
    <64 lowercase hex digits: the 32-byte RFC 8032 seed>

The file is created with mode 0600 (written to a temporary file, fsynced, renamed, and the
folder fsynced) and refused on load if group or others can read it. The anchor cannot import
the gateway's key store: both use the format in ``pledgewatch.seedfile``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from anchor.errors import AnchorError
from pledgewatch.errors import ValidationError
from pledgewatch.seedfile import decode_seed_file, encode_seed_file
from pledgewatch.signing import SigningKey


class KeyFileError(AnchorError):
    """A key file is missing, unreadable, malformed or readable by group or others."""


def generate(path: Path, *, overwrite: bool = False, what: str = "key") -> SigningKey:
    """Create a new key file (0600). Refuses to replace an existing key unless told to."""
    if path.exists() and not overwrite:
        raise KeyFileError(f"{path} already exists; refusing to replace a {what}")
    key = SigningKey.generate()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, encode_seed_file(key))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        raise KeyFileError(f"cannot write {what} {path}: {exc.strerror}") from None
    return key


def load(path: Path, *, what: str = "key") -> SigningKey:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{what} {path} is not text") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"{what} {path} has mode {stat.S_IMODE(mode):o}, want 600 (chmod 600 {path})"
        )
    try:
        return decode_seed_file(text, f"{what} {path}")
    except ValidationError as exc:
        raise KeyFileError(str(exc)) from None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
