"""Issuing the bank's release tokens: consent for pledged goods to leave the warehouse.

``issue`` checks the request against the loan book in force at ``now_ms`` and refuses (one
``ReleaseError`` naming every problem) unless: the loan is in the book and in force that day
(UTC), the warehouse is the loan's, the loan pledges that lot, ``qty`` is at most the pledged
qty *minus the qty of the loan's still-unexpired tokens for that lot* (so repeated tokens
cannot together release more than is pledged), and ``until_ms`` is after ``now_ms``. It then
signs the token (format: ``pledgewatch.release``) with the bank's release key and stores the
wire bytes in ``release_tokens`` in the same transaction, under the loan book's lock.

Token ids are ``rel-`` + the first 20 hex digits of
``SHA-256(RELEASE_ID_DOMAIN || canonical({"counter", "issued_ms", "loan_id", "lot"}))``,
where ``counter`` is the token's issue number in this store: deterministic (no randomness
needed), unique (the counter never repeats; the table's UNIQUE constraint backs it), not
secret. A release from a dynamic pledge needs a token only for lots the book names: a
dynamic pledge of a whole SKU is watched by value (``min_value``), not per release.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from anchor.errors import AnchorError
from anchor.loanbook import LoanBook
from anchor.loans import read_book_at
from anchor.store.db import Database, Tx
from anchor.store.loans_schema import LOANBOOK_LOCK_ID
from pledgewatch import canonical
from pledgewatch.errors import ValidationError
from pledgewatch.release import ReleaseToken, sign_token
from pledgewatch.signing import SigningKey

RELEASE_ID_DOMAIN = b"pledgewatch/release-id/v1\n"


class ReleaseError(AnchorError):
    """A release token was refused; ``problems`` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("release refused: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class IssuedToken:
    seq: int  # issue order in this store
    token: ReleaseToken
    book_version: int  # the loan book version it was checked against
    wire: bytes  # the signed bytes, exactly as handed to the warehouse


@dataclass(frozen=True, slots=True)
class _Request:
    warehouse: str
    loan_id: str
    lot: str
    qty: int
    until_ms: int
    now_ms: int


def release_id(loan_id: str, lot: str, issued_ms: int, counter: int) -> str:
    body = {"counter": counter, "issued_ms": issued_ms, "loan_id": loan_id, "lot": lot}
    digest = hashlib.sha256(RELEASE_ID_DOMAIN + canonical.encode(body)).hexdigest()
    return f"rel-{digest[:20]}"


def issue(
    db: Database,
    key: SigningKey,
    *,
    warehouse: str,
    loan_id: str,
    lot: str,
    qty: int,
    until_ms: int,
    now_ms: int,
) -> bytes:
    """Check the request against the book, sign, store and return the token's wire bytes."""
    request = _Request(warehouse, loan_id, lot, qty, until_ms, now_ms)
    with db.transaction() as tx:
        tx.lock(LOANBOOK_LOCK_ID)
        book = read_book_at(tx, now_ms)
        problems = _problems(tx, book, request)
        if problems or book is None:
            raise ReleaseError(problems or ["no loan book"])
        (count,) = tx.one("SELECT COUNT(*) FROM release_tokens")
        seq = int(count) + 1
        try:
            token = ReleaseToken(
                release_id(loan_id, lot, now_ms, seq),
                warehouse,
                loan_id,
                lot,
                qty,
                now_ms,
                until_ms,
            )
        except ValidationError as exc:
            raise ReleaseError([str(exc)]) from None
        wire = sign_token(token, key)
        tx.execute(
            "INSERT INTO release_tokens (seq, id, warehouse, loan_id, lot, qty, issued_ms,"
            " expires_ms, book_version, wire) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, token.id, warehouse, loan_id, lot, qty, now_ms, until_ms, book.version, wire),
        )
    return wire


def _problems(tx: Tx, book: LoanBook | None, r: _Request) -> list[str]:
    problems = []
    if r.until_ms <= r.now_ms:
        problems.append(f"until {_iso(r.until_ms)} is not after now ({_iso(r.now_ms)})")
    if r.qty <= 0:
        problems.append(f"qty: got {r.qty}, want at least 1")
    if book is None:
        return [*problems, f"no loan book is in force at {_iso(r.now_ms)}: import one first"]
    loan = book.loan(r.loan_id)
    if loan is None:
        return [*problems, f"loan {r.loan_id!r} is not in loan book version {book.version}"]
    day = dt.datetime.fromtimestamp(r.now_ms // 1000, dt.UTC).date()
    if not loan.in_force(day):
        problems.append(f"loan {r.loan_id} is not in force on {day} ({loan.start} to {loan.end})")
    if loan.warehouse != r.warehouse:
        problems.append(f"loan {r.loan_id} is in warehouse {loan.warehouse}, not {r.warehouse}")
    pledges = [p for p in book.pledges if p.loan_id == r.loan_id and p.lot == r.lot]
    if not pledges:
        return [*problems, f"loan {r.loan_id} does not pledge lot {r.lot!r}"]
    pledged = sum(p.qty for p in pledges)  # one row: the import refuses duplicate pledges
    open_ids, open_qty = _unexpired(tx, r)
    if r.qty + open_qty > pledged:
        already = f" plus {open_qty} in unexpired tokens {', '.join(open_ids)}" if open_ids else ""
        problems.append(
            f"qty {r.qty}{already} is more than the {pledged} units of lot {r.lot}"
            f" pledged to loan {r.loan_id}"
        )
    return problems


def _unexpired(tx: Tx, r: _Request) -> tuple[list[str], int]:
    rows = tx.all(
        "SELECT id, qty FROM release_tokens WHERE loan_id = ? AND lot = ? AND expires_ms > ?"
        " ORDER BY seq",
        (r.loan_id, r.lot, r.now_ms),
    )
    return [row[0] for row in rows], sum(int(row[1]) for row in rows)


def _iso(ms: int) -> str:
    try:
        moment = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    except (OverflowError, ValueError, OSError):
        return f"{ms} ms"
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def list_issued(db: Database) -> list[IssuedToken]:
    """Every token this store issued, in issue order."""
    rows = db.read().all(
        "SELECT seq, id, warehouse, loan_id, lot, qty, issued_ms, expires_ms, book_version, wire"
        " FROM release_tokens ORDER BY seq"
    )
    return [
        IssuedToken(
            int(r[0]),
            ReleaseToken(r[1], r[2], r[3], r[4], int(r[5]), int(r[6]), int(r[7])),
            int(r[8]),
            bytes(r[9]),
        )
        for r in rows
    ]


def list_tokens(db: Database) -> list[bytes]:
    """The wire bytes of every issued token, in issue order."""
    return [issued.wire for issued in list_issued(db)]
