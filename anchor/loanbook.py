"""The loan book's types: loans, what is pledged to them, and the price feed.

Money and ratios are ``decimal.Decimal`` (never floats); quantities are integers (units).
Coverage is collateral value ÷ outstanding, where collateral value is
- static pledge: Σ over pledged lots of min(book stock of the lot, pledged qty) × unit price;
- dynamic pledge: Σ over eligible SKUs of book stock in the loan's warehouse × unit price,
with the latest unit price on or before the valuation date. A loan is in force on
``start <= date <= end``.
"""

from __future__ import annotations

import bisect
import datetime as dt
import enum
from dataclasses import dataclass, field
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
    """The book, with lookups indexed once at construction: a reconcile of 10 k loans asks for
    every loan's pledges and prices, which scanning the tuples made quadratic."""

    loans: tuple[Loan, ...]
    pledges: tuple[Pledge, ...]
    prices: tuple[Price, ...]
    version: int = 1
    _loans: dict[str, Loan] = field(init=False, repr=False, compare=False)
    _pledges: dict[str, tuple[Pledge, ...]] = field(init=False, repr=False, compare=False)
    _prices: dict[str, tuple[list[dt.date], list[Decimal]]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        loans: dict[str, Loan] = {}
        for loan in self.loans:
            loans.setdefault(loan.loan_id, loan)  # the first wins, as a scan would
        pledges: dict[str, list[Pledge]] = {}
        for pledge in self.pledges:
            pledges.setdefault(pledge.loan_id, []).append(pledge)
        dated: dict[str, dict[dt.date, Decimal]] = {}
        for price in self.prices:
            dated.setdefault(price.sku, {}).setdefault(price.date, price.unit_price)
        prices = {}
        for sku, by_day in dated.items():
            days = sorted(by_day)
            prices[sku] = (days, [by_day[d] for d in days])
        object.__setattr__(self, "_loans", loans)
        object.__setattr__(self, "_pledges", {k: tuple(v) for k, v in pledges.items()})
        object.__setattr__(self, "_prices", prices)

    def loan(self, loan_id: str) -> Loan | None:
        return self._loans.get(loan_id)

    def pledges_of(self, loan_id: str) -> tuple[Pledge, ...]:
        """The loan's pledge rows, in file order."""
        return self._pledges.get(loan_id, ())

    def price(self, sku: str, day: dt.date) -> Decimal | None:
        """The latest unit price of ``sku`` on or before ``day`` (the first row of a date)."""
        found = self._prices.get(sku)
        if found is None:
            return None
        days, values = found
        i = bisect.bisect_right(days, day)
        return values[i - 1] if i else None
