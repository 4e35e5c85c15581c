"""Errors of the gateway package; ``GatewayError`` is the one base."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of everything the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration has problems; the message lists every one of them."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
        self.problems = problems


class StoreError(GatewayError):
    """The state database could not be read or written: never swallowed."""


class OutboxFull(GatewayError):
    """The outbox is at its cap: stop taking readings until receipts free space."""

    def __init__(self, depth: int, capacity: int) -> None:
        super().__init__(f"outbox full: {depth} of {capacity} events await a receipt")
        self.depth = depth
        self.capacity = capacity


class KeyStoreError(GatewayError):
    """The gateway key file is missing, unreadable, malformed or too widely readable."""
