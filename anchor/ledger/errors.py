"""Errors of the ledger backends.

``LedgerError`` means the ledger could not do what was asked: a bad URL, an unreachable node,
a timeout, a refused or failed transaction, a ledger file that is not ours or is damaged. It
never means "the evidence is wrong": a receipt that does not match what the ledger holds
raises ``pledgewatch.errors.ProofError`` (with ``expected`` and ``computed``), so callers can
tell "could not check" from "checked, and it is false".
"""

from __future__ import annotations

from anchor.errors import AnchorError


class LedgerError(AnchorError):
    """A ledger operation failed (I/O, node, timeout, refused transaction, foreign file)."""


class LedgerConfigError(LedgerError):
    """A ledger URL or option that cannot be used; the message lists every problem found."""
