"""What each API endpoint answers, as plain JSON-ready values (no HTTP here).

Money and ratios are decimal strings (``"1250000.00"``, ``"1.2500"``), never JSON numbers, so
no value is rounded through a float on the way to the bank's systems. Times are RFC 3339 UTC.
Errors are ``ApiProblem`` with the HTTP status they stand for; the server turns them into
problem objects (RFC 9457).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from anchor.alerts.model import ALERT_COLUMNS, AlertState, alert_from_row
from anchor.alerts.webhooks import EvidenceLinks, alert_data, rfc3339
from anchor.api.coverage import BookView, LoanCoverage
from anchor.loanbook import LoanBook
from anchor.proofs import ProofUnavailable, build_event_proof
from anchor.publish import LeafMirror
from anchor.reconcile.conditions import Rule, Severity
from anchor.store.db import Database
from pledgewatch.errors import PledgewatchError

PROOF_PATH = "/v1/events/{event_id}/proof"
LINKS = EvidenceLinks(PROOF_PATH)
EVENT_ID = re.compile(r"[0-9a-f]{64}")
STATES = {
    "open": (AlertState.OPEN,),
    "acknowledged": (AlertState.ACKNOWLEDGED,),
    "resolved": (AlertState.RESOLVED,),
    "active": (AlertState.OPEN, AlertState.ACKNOWLEDGED),
    "all": tuple(AlertState),
}
SEVERITIES = {s.name.lower(): s for s in Severity}
RULES = {r.value: r for r in Rule}


class ApiProblem(Exception):
    """An answer other than 200: ``status`` and a message that names what is wrong."""

    def __init__(self, status: HTTPStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _plain(value: Decimal) -> str:
    return format(value, "f")


def loan_json(c: LoanCoverage, book: LoanBook, active_alerts: int) -> dict[str, Any]:
    loan = c.loan
    return {
        "loan_id": loan.loan_id,
        "borrower": loan.borrower,
        "warehouse": loan.warehouse,
        "currency": loan.currency,
        "outstanding": _plain(loan.outstanding),
        "start": loan.start.isoformat(),
        "end": loan.end.isoformat(),
        "pledge_type": loan.pledge_type.value,
        "advance_rate": _plain(loan.advance_rate),
        "min_value": _plain(loan.min_value),
        "pledges": [
            {"lot": p.lot, "sku": p.sku, "qty": p.qty}
            for p in book.pledges
            if p.loan_id == loan.loan_id
        ],
        "coverage": {
            "state": c.state.value,
            "collateral_value": _plain(c.value),
            "ratio": None if c.ratio is None else f"{c.ratio:.4f}",
            "warning_line": _plain(loan.warning_ratio),
            "liquidation_line": _plain(loan.liquidation_ratio),
            "unpriced": list(c.unpriced),
        },
        "active_alerts": active_alerts,
    }


def _active_counts(db: Database) -> dict[str, int]:
    rows = db.read().all(
        "SELECT loan_id, COUNT(*) FROM alerts WHERE state <> 'resolved' AND loan_id IS NOT NULL"
        " GROUP BY loan_id"
    )
    return {str(loan_id): int(n) for loan_id, n in rows}


def loans(db: Database, view: BookView) -> dict[str, Any]:
    """Every loan of the book in force (none when no book is in force yet)."""
    book, counts = view.book, _active_counts(db)
    listed = (
        []
        if book is None
        else [loan_json(c, book, counts.get(c.loan.loan_id, 0)) for c in view.loans]
    )
    return {
        "at": rfc3339(view.at_ms),
        "book_version": None if book is None else book.version,
        "loans": listed,
    }


def one_loan(db: Database, view: BookView, loan_id: str) -> dict[str, Any]:
    for c in view.loans:
        if c.loan.loan_id == loan_id and view.book is not None:
            body = loan_json(c, view.book, _active_counts(db).get(loan_id, 0))
            return {"at": rfc3339(view.at_ms), "book_version": view.book.version, **body}
    raise ApiProblem(HTTPStatus.NOT_FOUND, f"no loan {loan_id!r} in the loan book in force")


@dataclass(frozen=True, slots=True)
class AlertFilter:
    state: str = "active"
    rule: str | None = None
    loan: str | None = None
    severity: str | None = None
    limit: int = 100
    before: int | None = None  # paging: only alerts with a smaller id


def alerts(db: Database, f: AlertFilter) -> dict[str, Any]:
    """Alerts newest first; ``next_before`` is the ``before`` of the next page (or null)."""
    states = [s.value for s in STATES[f.state]]
    where = [f"state IN ({', '.join('?' for _ in states)})"]
    params: list[object] = [*states]
    for column, value in (("rule", f.rule), ("loan_id", f.loan)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if f.severity is not None:
        where.append("severity = ?")
        params.append(int(SEVERITIES[f.severity]))
    if f.before is not None:
        where.append("id < ?")
        params.append(f.before)
    rows = db.read().all(
        f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {' AND '.join(where)}"  # noqa: S608
        " ORDER BY id DESC LIMIT ?",
        (*params, f.limit + 1),
    )
    found = [alert_from_row(r) for r in rows[: f.limit]]
    more = len(rows) > f.limit
    return {
        "alerts": [alert_data(a, LINKS) for a in found],
        "next_before": found[-1].id if more and found else None,
    }


def event_proof(db: Database, event_id: str, mirror: LeafMirror) -> bytes:
    """The exact bytes ``pledgewatch proof`` writes for the event."""
    if EVENT_ID.fullmatch(event_id) is None:
        raise ApiProblem(HTTPStatus.BAD_REQUEST, "event_id: want 64 lowercase hex digits")
    if db.read().one("SELECT 1 FROM events WHERE event_id = ?", (event_id,)) is None:
        raise ApiProblem(HTTPStatus.NOT_FOUND, f"no stored event {event_id}")
    try:
        return build_event_proof(db, event_id, mirror)
    except ProofUnavailable as exc:
        raise ApiProblem(HTTPStatus.CONFLICT, str(exc)) from None


def latest_checkpoint(db: Database) -> dict[str, Any]:
    row = db.read().one(
        "SELECT size, root, COALESCE(cosigned_note, note), created_ms,"
        " cosigned_note IS NOT NULL, ledger_receipt IS NOT NULL"
        " FROM checkpoints ORDER BY size DESC LIMIT 1"
    )
    if row is None:
        raise ApiProblem(HTTPStatus.NOT_FOUND, "the log has no checkpoint yet; retry later")
    size, root, note, created_ms, witnessed, anchored = row
    return {
        "size": int(size),
        "root": bytes(root).hex(),
        "note": str(note),
        "created_at": rfc3339(int(created_ms)),
        "witnessed": bool(witnessed),
        "anchored": bool(anchored),
    }


def consistency(db: Database, mirror: LeafMirror, first: int, second: int | None) -> dict[str, Any]:
    """RFC 6962/9162 consistency proof between tree sizes ``first`` and ``second`` (default:
    the latest checkpoint's size). The roots are the log's own: compare them with signed
    checkpoints before trusting them."""
    if second is None:
        row = db.read().one("SELECT MAX(size) FROM checkpoints")
        if row is None or row[0] is None:
            raise ApiProblem(HTTPStatus.NOT_FOUND, "the log has no checkpoint yet; retry later")
        second = int(row[0])
    try:
        mirror.sync(db)
    except PledgewatchError as exc:
        raise ApiProblem(HTTPStatus.SERVICE_UNAVAILABLE, f"log not readable: {exc}") from None
    size = mirror.tree.size
    if not 1 <= first <= second <= size:
        raise ApiProblem(
            HTTPStatus.BAD_REQUEST,
            f"sizes: got first={first} second={second}, want 1 <= first <= second <= {size}"
            " (the log's size)",
        )
    proof = mirror.tree.consistency_proof(first, second)
    return {
        "first": first,
        "second": second,
        "first_root": mirror.tree.root(first).hex(),
        "second_root": mirror.tree.root(second).hex(),
        "proof": [h.hex() for h in proof],
    }
