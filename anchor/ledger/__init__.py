"""Ledgers that hold checkpoint anchors: one protocol, one backend per URL scheme.

    ledger = open_ledger("sqlite:///var/lib/pledgewatch/ledger.db")
    receipt = ledger.anchor(anchor_payload(origin, size, root))   # blocks until included
    ledger.check(receipt)                                         # raises ProofError if false
    ledger.close()

URL schemes (the part before ``+`` picks the backend in ``LEDGERS``):

- ``sqlite:///abs/path/ledger.db``, ``sqlite:relative/path.db`` — the embedded, append-only,
  hash-chained ledger (the default; ``anchor.ledger.sqlite``).
- ``ethereum+http://127.0.0.1:8545?from=0x…`` or ``ethereum+https://host/path?key_file=/p`` —
  a zero-value self-transaction carrying the payload as calldata (``anchor.ledger.ethereum``;
  needs the ``ethereum`` extra, web3.py, imported only when such a URL is opened).

Constructing a backend (``from_url``) parses and validates the URL and does no I/O;
``open()`` does the I/O (opens or creates the file, connects to the node). ``open_ledger``
does both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

from anchor.ledger.errors import LedgerConfigError, LedgerError
from pledgewatch.anchoring import LedgerReceipt

__all__ = ["LEDGERS", "Ledger", "LedgerConfigError", "LedgerError", "open_ledger"]


class Ledger(Protocol):
    """A place that durably records anchor payloads and can later confirm it did."""

    def anchor(self, payload: bytes) -> LedgerReceipt:
        """Submit ``payload``, block until the ledger includes it, return where it landed.

        Raises ``LedgerError`` when it cannot (unreachable, timeout, refused); never returns a
        receipt for something the ledger does not hold.
        """
        ...

    def check(self, receipt: LedgerReceipt) -> None:
        """Re-read the ledger and confirm ``receipt``: same payload bytes, same position and
        time. Raises ``pledgewatch.errors.ProofError`` when the ledger disagrees and
        ``LedgerError`` when it cannot be read; returns only when the receipt checked out.
        """
        ...

    def close(self) -> None:
        """Release files and connections; idempotent."""
        ...


def _open_sqlite(url: str) -> Ledger:
    from anchor.ledger.sqlite import SqliteLedger

    ledger = SqliteLedger.from_url(url)
    ledger.open()
    return ledger


def _open_ethereum(url: str) -> Ledger:
    try:
        from anchor.ledger.ethereum import EthereumLedger
    except ImportError as exc:
        raise LedgerError(
            f"ethereum ledger needs web3.py (pip install 'pledgewatch[ethereum]'): {exc}"
        ) from None
    ledger = EthereumLedger.from_url(url)
    ledger.open()
    return ledger


LEDGERS: dict[str, Callable[[str], Ledger]] = {
    "sqlite": _open_sqlite,
    "ethereum": _open_ethereum,
}


def ledger_kind(url: str) -> str:
    """The ``LEDGERS`` key for ``url``: its scheme up to the first ``+``, lowercased."""
    scheme = urlsplit(url).scheme.lower()
    kind = scheme.split("+", 1)[0]
    if kind not in LEDGERS:
        raise LedgerConfigError(
            f"ledger URL scheme: got {scheme or '(none)'!r}, want one of "
            f"{', '.join(sorted(LEDGERS))} (e.g. sqlite:///path/ledger.db)"
        )
    return kind


def open_ledger(url: str) -> Ledger:
    """Build the backend for ``url`` and open it (this is where the I/O happens)."""
    return LEDGERS[ledger_kind(url)](url)
