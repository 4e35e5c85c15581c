"""The loan book's types: loans, what is pledged to them, and the price feed.

Money and ratios are ``decimal.Decimal`` (never floats); quantities are integers (units).
Coverage is collateral value ÷ outstanding, where collateral value is
- static pledge: Σ over pledged lots of min(book stock of the lot, pledged qty) × unit price;
- dynamic pledge: Σ over eligible SKUs of book stock in the loan's warehouse × unit price,
with the latest unit price on or before the valuation date. A loan is in force on
``start <= date <= end``.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from decimal import Decimal


class PledgeType(enum.Enum):
    STATIC = "static"  # these lots
    DYNAMIC = "dynamic"  # keep stock of eligible SKUs worth at least min_value


@dataclass(frozen=True, slots=True)
class Loan:
    loan_id: str
    borrower: str
    warehouse: str
    currency: str
    outstanding: Decimal
    start: dt.date
    end: dt.date
    pledge_type: PledgeType
    advance_rate: Decimal  # lend this share of collateral value (0.5-0.8 typical)
    warning_ratio: Decimal  # coverage below this: margin call (COVERAGE_WARNING)
    liquidation_ratio: Decimal  # coverage below this: COVERAGE_BREACH
    min_value: Decimal  # dynamic pledges: collateral value floor (0 = none)

    def in_force(self, day: dt.date) -> bool:
        return self.start <= day <= self.end


@dataclass(frozen=True, slots=True)
class Pledge:
    loan_id: str
    lot: str | None  # None: dynamic pledge, the SKU is eligible
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class Price:
    sku: str
    date: dt.date
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class LoanBook:
    loans: tuple[Loan, ...]
    pledges: tuple[Pledge, ...]
    prices: tuple[Price, ...]
    version: int = 1

    def loan(self, loan_id: str) -> Loan | None:
        return next((loan for loan in self.loans if loan.loan_id == loan_id), None)

    def price(self, sku: str, day: dt.date) -> Decimal | None:
        """The latest unit price of ``sku`` on or before ``day``."""
        best: Price | None = None
        for p in self.prices:
            if p.sku == sku and p.date <= day and (best is None or p.date > best.date):
                best = p
        return None if best is None else best.unit_price
