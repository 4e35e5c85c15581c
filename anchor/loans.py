"""The loan book: CSV import (the usual core-banking export), validation and versioned storage.

Three files, UTF-8 (a leading BOM is allowed, nothing else), comma-separated, ``"`` quoting,
with exactly this header row, order included (docs/loanbook.md has an example of each)::

    loans.csv    loan_id,borrower,warehouse_id,currency,outstanding,start,end,pledge_type,
                 advance_rate,warning_ratio,liquidation_ratio,min_value
    pledges.csv  loan_id,lot,sku,qty
    prices.csv   sku,date,unit_price

Values: ids and names are 1-128 characters without control characters or surrounding spaces;
``warehouse_id`` follows ``pledgewatch.topics.ID_PATTERN``; dates are ``YYYY-MM-DD``; money,
ratios and prices are plain decimals (``1000.00``: ASCII digits and at most one ``.``; no sign,
exponent, separators or NaN), parsed with ``decimal.Decimal``; money has at most the
currency's ISO 4217 minor units, ratios at most 4 places, unit prices at most 6; quantities
are whole numbers. Row rules: ``start <= end``; ``0 < advance_rate <= 1``;
``warning_ratio > liquidation_ratio > 0``; ``loan_id`` unique; a pledge names a loan of
loans.csv; a static pledge names a lot and a qty >= 1; a dynamic pledge may leave ``lot`` empty
(the SKU is eligible) and may have qty 0; one lot is one SKU; one (sku, date) price; every
pledged SKU has a price and is pledged in one currency only (prices.csv has no currency).

``load_csv`` validates all three files and raises one ``LoanBookError`` listing every problem
as ``file:line: column name: got …, want …``; nothing is stored unless all three are clean.
Each stored book is a new *version* with ``valid_from_ms``; ``book_at`` gives the version in
force at a past time, so coverage can be valued as the book stood then.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from anchor.errors import AnchorError
from anchor.loanbook import Loan, LoanBook, Pledge, PledgeType, Price
from anchor.store.db import Database, Tx
from anchor.store.loans_schema import LOANBOOK_LOCK_ID
from pledgewatch.topics import ID_PATTERN

_T = TypeVar("_T")

LOANS_HEADER = (
    "loan_id",
    "borrower",
    "warehouse_id",
    "currency",
    "outstanding",
    "start",
    "end",
    "pledge_type",
    "advance_rate",
    "warning_ratio",
    "liquidation_ratio",
    "min_value",
)
PLEDGES_HEADER = ("loan_id", "lot", "sku", "qty")
PRICES_HEADER = ("sku", "date", "unit_price")

MAX_TEXT = 128  # as event text (pledgewatch.events): lots and SKUs must match events
RATIO_PLACES = 4
PRICE_PLACES = 6  # unit prices are often quoted finer than the currency's minor unit

# ISO 4217 active codes (2025) and their minor units; every code not listed has 2.
_MINOR_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_MINOR_3 = "BHD IQD JOD KWD LYD OMR TND"
_MINOR_4 = "CLF UYW"
_MINOR_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR "
    "FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW "
    "KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN "
    "NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD "
    "SHP SLE SLL SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU "
    "UZS VED VES WST XCD XCG YER ZAR ZMW ZWG ZWL"
)
MINOR_UNITS: dict[str, int] = {
    code: places
    for places, codes in ((0, _MINOR_0), (2, _MINOR_2), (3, _MINOR_3), (4, _MINOR_4))
    for code in codes.split()
}

_DECIMAL = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]+)?")
_COUNT = re.compile(r"0|[1-9][0-9]*")
MAX_COUNT = 2**53 - 1
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BOM = b"\xef\xbb\xbf"


class LoanBookError(AnchorError):
    """The loan book has problems, or an update was refused; ``problems`` lists every one."""

    def __init__(self, problems: list[str]) -> None:
        text = problems[0] if len(problems) == 1 else "\n  - ".join(["", *problems])
        super().__init__(f"loan book: {len(problems)} problem(s): {text}")
        self.problems = problems


@dataclass(frozen=True, slots=True)
class BookVersion:
    version: int
    valid_from_ms: int
    note: str


class _Bad(Exception):
    """A cell does not parse; ``want`` says what was expected."""

    def __init__(self, want: str) -> None:
        super().__init__(want)
        self.want = want


@dataclass(frozen=True, slots=True)
class _Row:
    file: str
    line: int
    cells: dict[str, str]
    problems: list[str]

    def take(self, column: str, parse: Callable[[str], _T]) -> _T | None:
        """The parsed cell, or None after recording ``file:line: column c: got …, want …``."""
        raw = self.cells[column]
        try:
            return parse(raw)
        except _Bad as exc:
            self.refuse(column, f"got {raw!r}, want {exc.want}")
            return None

    def refuse(self, column: str, text: str) -> None:
        self.problems.append(f"{self.file}:{self.line}: column {column}: {text}")


# --- cell parsers: return the value or raise _Bad(what was wanted) ---------------------------


def _text(raw: str) -> str:
    if not 1 <= len(raw) <= MAX_TEXT or _CONTROL.search(raw) or raw != raw.strip():
        raise _Bad(f"1-{MAX_TEXT} characters, no control characters or surrounding spaces")
    return raw


def _lot(raw: str) -> str:
    """A lot id, or "" (no lot: the whole SKU is eligible, for dynamic pledges)."""
    return raw if raw == "" else _text(raw)


def _warehouse(raw: str) -> str:
    if ID_PATTERN.fullmatch(raw) is None:
        raise _Bad("a warehouse id: 1-64 of [a-z0-9._-], starting with [a-z0-9]")
    return raw


def _currency(raw: str) -> str:
    if raw not in MINOR_UNITS:
        raise _Bad("an ISO 4217 currency code like EUR")
    return raw


def _pledge_type(raw: str) -> PledgeType:
    try:
        return PledgeType(raw)
    except ValueError:
        raise _Bad("static or dynamic") from None


def _date(raw: str) -> dt.date:
    if _DATE.fullmatch(raw) is None:
        raise _Bad("a date like 2026-01-31")
    try:
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise _Bad("a calendar date like 2026-01-31") from None


def _count(raw: str) -> int:
    if _COUNT.fullmatch(raw) is None:
        raise _Bad("a whole number like 40 (no sign, decimals or separators)")
    # len first: int() of more than 4300 digits raises ValueError, not a problem report
    if len(raw) > 16 or int(raw) > MAX_COUNT:
        raise _Bad(f"a whole number up to {MAX_COUNT} (the largest qty an event carries)")
    return int(raw)


def _decimal(places: int | None, example: str) -> Callable[[str], Decimal]:
    """A parser of plain decimals with at most ``places`` decimal places (None: any)."""

    def parse(raw: str) -> Decimal:
        match = _DECIMAL.fullmatch(raw)
        if match is None:
            raise _Bad(f"a decimal like {example}")
        fraction = match.group(2) or "."
        if places is not None and len(fraction) - 1 > places:
            raise _Bad(f"at most {places} decimal places, like {example}")
        return Decimal(raw)

    return parse


def _money(currency: str | None) -> Callable[[str], Decimal]:
    places = None if currency is None else MINOR_UNITS[currency]
    return _decimal(places, "1000" + ("." + "0" * places if places else ""))


_ratio = _decimal(RATIO_PLACES, "0.75")
_price = _decimal(PRICE_PLACES, "12.50")


# --- reading files --------------------------------------------------------------------------


def _read(path: Path, header: tuple[str, ...], problems: list[str]) -> list[_Row] | None:
    """The data rows of one file, or None if it cannot be read at all (problems recorded)."""
    name = path.name
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(f"{name}: cannot read {path}: {exc.strerror}")
        return None
    data = data.removeprefix(_BOM)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        problems.append(
            f"{name}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start});"
            " export the file as UTF-8"
        )
        return None
    if not text.strip():
        problems.append(f"{name}:1: empty file, want the header {','.join(header)}")
        return None
    return _rows(name, text, header, problems)


def _rows(name: str, text: str, header: tuple[str, ...], problems: list[str]) -> list[_Row] | None:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[_Row] = []
    try:
        if not _header_ok(name, next(reader), header, problems):
            return None
        start = reader.line_num + 1
        for fields in reader:
            line, start = start, reader.line_num + 1
            if not fields:
                continue  # a blank line
            if len(fields) != len(header):
                problems.append(
                    f"{name}:{line}: got {len(fields)} fields, want {len(header)}"
                    f" ({','.join(header)})"
                )
                continue
            rows.append(_Row(name, line, dict(zip(header, fields, strict=True)), problems))
    except csv.Error as exc:
        problems.append(f"{name}:{reader.line_num}: not valid CSV: {exc}")
        return None
    return rows


def _header_ok(name: str, got: list[str], want: tuple[str, ...], problems: list[str]) -> bool:
    if tuple(got) == want:
        return True
    before = len(problems)
    missing = [column for column in want if column not in got]
    for column in got:
        if column not in want:
            near = difflib.get_close_matches(column, missing, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            problems.append(f"{name}:1: header: column {column!r} is not expected{hint}")
    for column in missing:
        problems.append(f"{name}:1: header: column {column!r} is missing")
    for column in sorted({c for c in got if got.count(c) > 1}):
        problems.append(f"{name}:1: header: column {column!r} appears more than once")
    if len(problems) == before:
        problems.append(
            f"{name}:1: header: columns out of order: got {','.join(got)}, want {','.join(want)}"
        )
    return False


# --- rows to typed values -------------------------------------------------------------------


def _parse_loan(row: _Row) -> Loan | None:
    before = len(row.problems)
    loan_id = row.take("loan_id", _text)
    borrower = row.take("borrower", _text)
    warehouse = row.take("warehouse_id", _warehouse)
    currency = row.take("currency", _currency)
    v: dict[str, Any] = {
        "loan_id": loan_id,
        "borrower": borrower,
        "warehouse": warehouse,
        "currency": currency,
        "outstanding": row.take("outstanding", _money(currency)),
        "start": row.take("start", _date),
        "end": row.take("end", _date),
        "pledge_type": row.take("pledge_type", _pledge_type),
        "advance_rate": row.take("advance_rate", _ratio),
        "warning_ratio": row.take("warning_ratio", _ratio),
        "liquidation_ratio": row.take("liquidation_ratio", _ratio),
        "min_value": row.take("min_value", _money(currency)),
    }
    _check_loan_rules(row, v)
    return Loan(**v) if len(row.problems) == before else None


def _check_loan_rules(row: _Row, v: dict[str, Any]) -> None:
    cells = row.cells
    if v["start"] is not None and v["end"] is not None and v["end"] < v["start"]:
        row.refuse("end", f"got {cells['end']!r}, want on or after start {cells['start']}")
    if v["advance_rate"] is not None and not 0 < v["advance_rate"] <= 1:
        row.refuse("advance_rate", f"got {cells['advance_rate']!r}, want more than 0, at most 1")
    liquidation, warning = v["liquidation_ratio"], v["warning_ratio"]
    if liquidation is not None and liquidation <= 0:
        row.refuse("liquidation_ratio", f"got {cells['liquidation_ratio']!r}, want more than 0")
    if liquidation is not None and warning is not None and warning <= liquidation:
        row.refuse(
            "warning_ratio",
            f"got {cells['warning_ratio']!r}, want more than liquidation_ratio {liquidation}",
        )


def _parse_loans(rows: list[_Row]) -> dict[str, Loan]:
    loans: dict[str, Loan] = {}
    first_line: dict[str, int] = {}
    for row in rows:
        loan = _parse_loan(row)
        loan_id = row.cells["loan_id"]
        if loan_id in first_line:
            row.refuse(
                "loan_id", f"got {loan_id!r}, want a unique id (also on line {first_line[loan_id]})"
            )
            continue
        first_line[loan_id] = row.line
        if loan is not None:
            loans[loan_id] = loan
    return loans


@dataclass(frozen=True, slots=True)
class _Known:
    """What pledges.csv is checked against: loan ids seen (valid or not) and valid loans."""

    file: str
    ids: set[str]
    loans: dict[str, Loan]


def _parse_pledge(row: _Row, known: _Known | None) -> Pledge | None:
    before = len(row.problems)
    loan_id = row.take("loan_id", _text)
    lot = row.take("lot", _lot)
    sku = row.take("sku", _text)
    qty = row.take("qty", _count)
    if known is not None and loan_id is not None and loan_id not in known.ids:
        row.refuse("loan_id", f"got {loan_id!r}, want a loan_id of {known.file}")
    loan = None if known is None or loan_id is None else known.loans.get(loan_id)
    if loan is not None and loan.pledge_type is PledgeType.STATIC:
        if lot == "":
            row.refuse("lot", f"got '', want a lot: loan {loan_id} is a static pledge")
        if qty == 0:
            row.refuse("qty", "got '0', want at least 1 for a static pledge")
    if len(row.problems) > before or loan_id is None or lot is None or sku is None:
        return None
    return Pledge(loan_id, lot or None, sku, qty if qty is not None else 0)


def _parse_pledges(rows: list[_Row], known: _Known | None) -> list[tuple[_Row, Pledge]]:
    pledges: list[tuple[_Row, Pledge]] = []
    seen: dict[tuple[str, str | None, str], int] = {}
    lot_sku: dict[tuple[str, str], tuple[str, int]] = {}
    for row in rows:
        pledge = _parse_pledge(row, known)
        if pledge is None:
            continue
        key = (pledge.loan_id, pledge.lot, pledge.sku)
        if key in seen:
            row.refuse("lot", f"loan {pledge.loan_id} pledges this already on line {seen[key]}")
            continue
        seen[key] = row.line
        loan = None if known is None else known.loans.get(pledge.loan_id)
        if pledge.lot is not None and loan is not None:
            place = (loan.warehouse, pledge.lot)
            sku, line = lot_sku.setdefault(place, (pledge.sku, row.line))
            if sku != pledge.sku:
                row.refuse(
                    "sku",
                    f"got {pledge.sku!r}, want {sku!r}: lot {pledge.lot} is {sku}"
                    f" on line {line} (a lot is one SKU)",
                )
                continue
        pledges.append((row, pledge))
    return pledges


def _parse_prices(rows: list[_Row]) -> list[Price]:
    prices: list[Price] = []
    seen: dict[tuple[str, dt.date], int] = {}
    for row in rows:
        before = len(row.problems)
        sku = row.take("sku", _text)
        day = row.take("date", _date)
        unit_price = row.take("unit_price", _price)
        if len(row.problems) > before or sku is None or day is None or unit_price is None:
            continue
        if (sku, day) in seen:
            row.refuse("date", f"{sku} has a price for {day} already on line {seen[sku, day]}")
            continue
        seen[sku, day] = row.line
        prices.append(Price(sku, day, unit_price))
    return prices


def _check_sku_prices(
    pledges: list[tuple[_Row, Pledge]], loans: dict[str, Loan], priced: set[str], prices: str
) -> None:
    """Every pledged SKU has a price, and is pledged in one currency (prices have none)."""
    currency_of: dict[str, tuple[str, str]] = {}
    reported: set[str] = set()
    for row, pledge in pledges:
        if pledge.sku not in priced and pledge.sku not in reported:
            reported.add(pledge.sku)
            row.refuse("sku", f"got {pledge.sku!r}, which has no price in {prices}")
        loan = loans.get(pledge.loan_id)
        if loan is None:
            continue
        currency, other = currency_of.setdefault(pledge.sku, (loan.currency, loan.loan_id))
        if currency != loan.currency:
            row.refuse(
                "sku",
                f"{pledge.sku} is pledged to {loan.loan_id} in {loan.currency} and to {other}"
                f" in {currency}, but {prices} has one price per SKU and date (no currency)",
            )


def load_csv(loans: Path, pledges: Path, prices: Path) -> LoanBook:
    """Parse and validate the three CSV files; raise one ``LoanBookError`` with every problem.

    Pure: reads the files, writes nothing. The book's ``version`` is 0 (not stored yet).
    """
    problems: list[str] = []
    loan_rows = _read(loans, LOANS_HEADER, problems)
    book_loans = _parse_loans(loan_rows or [])
    if loan_rows == []:
        problems.append(f"{loans.name}:2: no loans, want at least one row after the header")
    known = None
    if loan_rows is not None:  # else pledges cannot be checked against loans
        known = _Known(loans.name, {r.cells["loan_id"] for r in loan_rows}, book_loans)
    book_pledges = _parse_pledges(_read(pledges, PLEDGES_HEADER, problems) or [], known)
    price_rows = _read(prices, PRICES_HEADER, problems)
    book_prices = _parse_prices(price_rows or [])
    if price_rows is not None:
        priced = {row.cells["sku"] for row in price_rows}
        _check_sku_prices(book_pledges, book_loans, priced, prices.name)
    if problems:
        raise LoanBookError(problems)
    return LoanBook(
        tuple(book_loans.values()),
        tuple(pledge for _, pledge in book_pledges),
        tuple(book_prices),
        version=0,
    )


def parse_amount(text: str) -> Decimal:
    """A plain decimal typed by a person (``800.00``); its places are checked by ``repay``."""
    try:
        return _decimal(None, "1000.00")(text)
    except _Bad as exc:
        raise LoanBookError([f"got {text!r}, want {exc.want}"]) from None


# --- the store ------------------------------------------------------------------------------

# A constant (never user input), shared by the statements that write and read loans.
_LOAN_COLUMNS = (
    "loan_id, borrower, warehouse, currency, outstanding, start_date, end_date, pledge_type,"
    " advance_rate, warning_ratio, liquidation_ratio, min_value"
)


def _plain(value: Decimal) -> str:
    return format(value, "f")


def import_csv(db: Database, loans: Path, pledges: Path, prices: Path, now_ms: int) -> int:
    """Validate all three files, then store them as a new version; nothing is stored on error."""
    return save_book(db, load_csv(loans, pledges, prices), now_ms)


def save_book(db: Database, book: LoanBook, now_ms: int) -> int:
    """Store ``book`` as a new version, in force from ``now_ms``; return its version number."""
    note = f"import: {len(book.loans)} loans, {len(book.pledges)} pledges"
    with db.transaction() as tx:
        tx.lock(LOANBOOK_LOCK_ID)
        version = _new_version(tx, now_ms, note)
        tx.executemany(
            f"INSERT INTO loan_book_loans (version, position, {_LOAN_COLUMNS})"  # noqa: S608
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(version, i, *_loan_row(loan)) for i, loan in enumerate(book.loans)],
        )
        tx.executemany(
            "INSERT INTO loan_book_pledges (version, position, loan_id, lot, sku, qty)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [(version, i, p.loan_id, p.lot, p.sku, p.qty) for i, p in enumerate(book.pledges)],
        )
        tx.executemany(
            "INSERT INTO loan_book_prices (version, position, sku, price_date, unit_price)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (version, i, p.sku, p.date.isoformat(), _plain(p.unit_price))
                for i, p in enumerate(book.prices)
            ],
        )
    return version


def _loan_row(loan: Loan) -> tuple[object, ...]:
    return (
        loan.loan_id,
        loan.borrower,
        loan.warehouse,
        loan.currency,
        _plain(loan.outstanding),
        loan.start.isoformat(),
        loan.end.isoformat(),
        loan.pledge_type.value,
        _plain(loan.advance_rate),
        _plain(loan.warning_ratio),
        _plain(loan.liquidation_ratio),
        _plain(loan.min_value),
    )


def _new_version(tx: Tx, now_ms: int, note: str) -> int:
    """Register the next version; refuse to start it before the latest one (clock skew)."""
    latest, latest_ms = tx.one("SELECT MAX(version), MAX(valid_from_ms) FROM loan_book_versions")
    if latest_ms is not None and now_ms < latest_ms:
        raise LoanBookError(
            [f"now ({now_ms} ms) is before version {latest} (valid from {latest_ms} ms)"]
        )
    version = (latest or 0) + 1
    tx.execute(
        "INSERT INTO loan_book_versions (version, valid_from_ms, note) VALUES (?, ?, ?)",
        (version, now_ms, note),
    )
    return int(version)


def repay(db: Database, loan_id: str, new_outstanding: Decimal, now_ms: int) -> int:
    """A new version in which only ``loan_id``'s outstanding is ``new_outstanding``."""
    with db.transaction() as tx:
        tx.lock(LOANBOOK_LOCK_ID)
        (latest,) = tx.one("SELECT MAX(version) FROM loan_book_versions")
        if latest is None:
            raise LoanBookError(["no loan book yet: import one first"])
        row = tx.one(
            "SELECT currency, outstanding FROM loan_book_loans WHERE version = ? AND loan_id = ?",
            (latest, loan_id),
        )
        if row is None:
            raise LoanBookError([f"loan {loan_id!r} is not in loan book version {latest}"])
        amount = _check_amount(new_outstanding, row[0])
        version = _new_version(tx, now_ms, f"repay {loan_id}: outstanding {row[1]} -> {amount}")
        _copy_version(tx, latest, version, loan_id, amount)
    return version


def _check_amount(value: Decimal, currency: str) -> str:
    places = MINOR_UNITS.get(currency, 2)
    exponent = value.as_tuple().exponent
    if not value.is_finite() or value < 0 or (isinstance(exponent, int) and -exponent > places):
        raise LoanBookError(
            [
                f"outstanding: got '{value}', want a decimal >= 0 with at most {places} places"
                f" ({currency})"
            ]
        )
    return _plain(value)


def _copy_version(tx: Tx, old: int, new: int, loan_id: str, outstanding: str) -> None:
    tx.execute(
        f"INSERT INTO loan_book_loans (version, position, {_LOAN_COLUMNS})"  # noqa: S608
        " SELECT ?, position, loan_id, borrower, warehouse, currency,"
        " CASE WHEN loan_id = ? THEN ? ELSE outstanding END, start_date, end_date,"
        " pledge_type, advance_rate, warning_ratio, liquidation_ratio, min_value"
        " FROM loan_book_loans WHERE version = ?",
        (new, loan_id, outstanding, old),
    )
    tx.execute(
        "INSERT INTO loan_book_pledges (version, position, loan_id, lot, sku, qty)"
        " SELECT ?, position, loan_id, lot, sku, qty FROM loan_book_pledges WHERE version = ?",
        (new, old),
    )
    tx.execute(
        "INSERT INTO loan_book_prices (version, position, sku, price_date, unit_price)"
        " SELECT ?, position, sku, price_date, unit_price FROM loan_book_prices"
        " WHERE version = ?",
        (new, old),
    )


def load_book(db: Database, version: int | None = None) -> LoanBook:
    """Version ``version`` of the book (the latest by default); raise if there is none."""
    tx = db.read()
    if version is None:
        (version,) = tx.one("SELECT MAX(version) FROM loan_book_versions")
        if version is None:
            raise LoanBookError(["no loan book yet: import one first"])
    elif tx.one("SELECT 1 FROM loan_book_versions WHERE version = ?", (version,)) is None:
        raise LoanBookError([f"no loan book version {version}"])
    return read_version(tx, int(version))


def book_at(db: Database, at_ms: int) -> LoanBook | None:
    """The version in force at ``at_ms``, or None if no version had started by then."""
    return read_book_at(db.read(), at_ms)


def read_book_at(tx: Tx, at_ms: int) -> LoanBook | None:
    """``book_at`` inside an open transaction (the release issuer holds the book's lock)."""
    version = book_version_at(tx, at_ms)
    return None if version is None else read_version(tx, version)


def book_version_at(tx: Tx, at_ms: int) -> int | None:
    """The number of the version in force at ``at_ms`` (versions never change once stored)."""
    row = tx.one(
        "SELECT version FROM loan_book_versions WHERE valid_from_ms <= ?"
        " ORDER BY valid_from_ms DESC, version DESC LIMIT 1",
        (at_ms,),
    )
    return None if row is None else int(row[0])


def list_versions(db: Database) -> list[BookVersion]:
    rows = db.read().all(
        "SELECT version, valid_from_ms, note FROM loan_book_versions ORDER BY version"
    )
    return [BookVersion(int(r[0]), int(r[1]), r[2]) for r in rows]


def read_version(tx: Tx, version: int) -> LoanBook:
    loans = tuple(
        Loan(
            r[0],
            r[1],
            r[2],
            r[3],
            Decimal(r[4]),
            dt.date.fromisoformat(r[5]),
            dt.date.fromisoformat(r[6]),
            PledgeType(r[7]),
            Decimal(r[8]),
            Decimal(r[9]),
            Decimal(r[10]),
            Decimal(r[11]),
        )
        for r in tx.all(
            f"SELECT {_LOAN_COLUMNS} FROM loan_book_loans"  # noqa: S608
            " WHERE version = ? ORDER BY position",
            (version,),
        )
    )
    pledges = tuple(
        Pledge(r[0], r[1], r[2], int(r[3]))
        for r in tx.all(
            "SELECT loan_id, lot, sku, qty FROM loan_book_pledges WHERE version = ?"
            " ORDER BY position",
            (version,),
        )
    )
    prices = tuple(
        Price(r[0], dt.date.fromisoformat(r[1]), Decimal(r[2]))
        for r in tx.all(
            "SELECT sku, price_date, unit_price FROM loan_book_prices WHERE version = ?"
            " ORDER BY position",
            (version,),
        )
    )
    return LoanBook(loans, pledges, prices, version=version)
