"""Errors of the anchor package; ``AnchorError`` is the one base."""

from __future__ import annotations


class AnchorError(Exception):
    """Base of everything the anchor raises on purpose."""


class ConfigError(AnchorError):
    """The configuration has problems; the message lists every one of them."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
        self.problems = problems


class StoreError(AnchorError):
    """The database could not be read or written, or is not what we expect."""


class RegistryError(AnchorError):
    """A gateway key operation was refused (unknown gateway, duplicate key, ...)."""
