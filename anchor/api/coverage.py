"""Loans as the bank sees them now: the book in force, and each loan's coverage.

Coverage is computed exactly as the live reconciler computes it for COVERAGE_WARNING and
COVERAGE_BREACH (``anchor.reconcile.collateral.collateral_value``) over the stock the
reconciler's ``IncrementalState`` holds after every *logged* event (followed in log order by
``LiveReconciler.follow``, which only reads; this module never evaluates rules or writes
alerts). The state is kept between requests, so a request applies only the new log entries.

State, with the reconciler's thresholds: ``breach`` below the liquidation line (or a dynamic
pledge under its minimum value), ``warning`` below the warning line, else ``ok``;
``not_in_force`` outside the loan's term and ``no_debt`` with nothing outstanding (no ratio).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from decimal import Decimal

from anchor.loanbook import Loan, LoanBook, PledgeType
from anchor.loans import book_at
from anchor.reconcile.collateral import StockIndex, collateral_value, lot_pledges
from anchor.reconcile.engine import LiveReconciler
from anchor.reconcile.settings import RuleSettings, day_of
from anchor.reconcile.snapshot import StateConfig
from anchor.store.db import Database


class CoverageState(enum.Enum):
    OK = "ok"
    WARNING = "warning"
    BREACH = "breach"
    NOT_IN_FORCE = "not_in_force"
    NO_DEBT = "no_debt"


@dataclass(frozen=True, slots=True)
class LoanCoverage:
    loan: Loan
    value: Decimal  # collateral value in the loan's currency
    ratio: Decimal | None  # value ÷ outstanding; None when not in force or no debt
    state: CoverageState
    unpriced: tuple[str, ...]  # SKUs held without a price that day (valued at 0)


@dataclass(frozen=True, slots=True)
class BookView:
    at_ms: int
    book: LoanBook | None  # None: no version of the book in force at ``at_ms``
    loans: tuple[LoanCoverage, ...]


def state_of(loan: Loan, value: Decimal, ratio: Decimal) -> CoverageState:
    floor = loan.pledge_type is PledgeType.DYNAMIC and loan.min_value > 0 and value < loan.min_value
    if ratio < loan.liquidation_ratio or floor:
        return CoverageState.BREACH
    if ratio < loan.warning_ratio:
        return CoverageState.WARNING
    return CoverageState.OK


class CoverageView:
    """Follows the log into one ``IncrementalState``; thread-safe."""

    def __init__(self, db: Database, config: StateConfig) -> None:
        self._follower = LiveReconciler(db, config, RuleSettings(), None)
        self._db = db
        self._lock = threading.Lock()

    def at(self, at_ms: int) -> BookView:
        with self._lock:
            while self._follower.follow() > 0:
                pass
            snapshot = self._follower.state.snapshot()
        book = book_at(self._db, at_ms)
        if book is None:
            return BookView(at_ms, None, ())
        index, pledges, day = StockIndex(snapshot), lot_pledges(book), day_of(at_ms)
        out = []
        for loan in book.loans:
            value, _, unpriced = collateral_value(book, loan, pledges, index, day)
            ratio = None
            if not loan.in_force(day):
                state = CoverageState.NOT_IN_FORCE
            elif loan.outstanding <= 0:
                state = CoverageState.NO_DEBT
            else:
                ratio = value / loan.outstanding
                state = state_of(loan, value, ratio)
            out.append(LoanCoverage(loan, value, ratio, state, tuple(unpriced)))
        return BookView(at_ms, book, tuple(out))
