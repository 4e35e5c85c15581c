"""The loan book: CSV import and validation, versioned storage, and ``pledgewatch loans``.

The golden files under tests/data/loanbook/ hold 3 loans in warehouse wh-1 — L-2026-001
(static: lots WR-1001 and WR-1002), L-2026-002 (dynamic: steel-coil is eligible) and
L-2026-003 (static: lot WR-1002 too, so a later test can find the DOUBLE_PLEDGE) — and 30
days of prices for 2 SKUs. Each bad-file case edits a copy of them and must name the file,
line and column, and leave the store empty. Store tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from anchor.loanbook import LoanBook, PledgeType
from anchor.loans import (
    LOANS_HEADER,
    LoanBookError,
    book_at,
    import_csv,
    list_versions,
    load_book,
    load_csv,
    repay,
    save_book,
)
from anchor.store.db import Database
from pledgewatch.cli import main

from store_rig import open_store

GOLDEN = Path(__file__).parent / "data" / "loanbook"
T0 = 1_769_904_000_000  # 2026-02-01T00:00:00Z
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Book:
    loans: Path
    pledges: Path
    prices: Path

    def paths(self) -> tuple[Path, Path, Path]:
        return self.loans, self.pledges, self.prices

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.folder / name
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} not in {name}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    @property
    def folder(self) -> Path:
        return self.loans.parent


def golden_copy(folder: Path) -> Book:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("loans.csv", "pledges.csv", "prices.csv"):
        shutil.copy(GOLDEN / name, folder / name)
    return Book(folder / "loans.csv", folder / "pledges.csv", folder / "prices.csv")


@pytest.fixture
def book(tmp_path: Path) -> Book:
    return golden_copy(tmp_path / "csv")


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = open_store(store_url)
    yield database
    database.close()


def stored_rows(db: Database) -> dict[str, int]:
    tx = db.read()
    return {
        table: tx.one(f"SELECT COUNT(*) FROM {table}")[0]
        for table in (
            "loan_book_versions",
            "loan_book_loans",
            "loan_book_pledges",
            "loan_book_prices",
        )
    }


def golden() -> LoanBook:
    return load_csv(GOLDEN / "loans.csv", GOLDEN / "pledges.csv", GOLDEN / "prices.csv")


# --- parsing the golden files ----------------------------------------------------------------


def test_golden_files_parse_into_the_loan_book_types() -> None:
    parsed = golden()
    assert parsed.version == 0
    assert [loan.loan_id for loan in parsed.loans] == ["L-2026-001", "L-2026-002", "L-2026-003"]
    first, second, _ = parsed.loans
    assert first.pledge_type is PledgeType.STATIC
    assert second.pledge_type is PledgeType.DYNAMIC
    assert second.borrower == "Harbour Metals, Ltd."  # a quoted field with a comma
    assert first.outstanding == Decimal("1200000.00")
    assert isinstance(first.advance_rate, Decimal)
    assert first.start == dt.date(2026, 1, 1)
    assert second.min_value == Decimal("1500000.00")
    dynamic = [p for p in parsed.pledges if p.loan_id == "L-2026-002"]
    assert [(p.lot, p.sku, p.qty) for p in dynamic] == [(None, "steel-coil", 0)]
    shared = {p.loan_id for p in parsed.pledges if p.lot == "WR-1002"}
    assert shared == {"L-2026-001", "L-2026-003"}  # the double pledge is imported, not refused
    assert len(parsed.prices) == 60
    assert {p.sku for p in parsed.prices} == {"steel-coil", "copper-cathode"}
    assert parsed.price("steel-coil", dt.date(2026, 1, 3)) == Decimal("41760.00")
    assert parsed.price("steel-coil", dt.date(2026, 6, 1)) == Decimal("38520.00")
    assert parsed.price("steel-coil", dt.date(2025, 12, 31)) is None


def test_bom_and_crlf_are_accepted(book: Book) -> None:
    for path in book.paths():
        text = path.read_text(encoding="utf-8").replace("\n", "\r\n")
        path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert load_csv(*book.paths()) == golden()


def test_blank_lines_are_skipped(book: Book) -> None:
    book.edit("pledges.csv", "L-2026-002,", "\nL-2026-002,")
    assert load_csv(*book.paths()) == golden()


# --- bad files: file, line, column; nothing imported -----------------------------------------


@dataclass(frozen=True)
class Bad:
    name: str
    mutate: Callable[[Book], object]
    want: str


def _edit(name: str, old: str, new: str) -> Callable[[Book], object]:
    return lambda book: book.edit(name, old, new)


def _write(name: str, data: bytes) -> Callable[[Book], object]:
    return lambda book: (book.folder / name).write_bytes(data)


def _latin1(book: Book) -> None:
    path = book.loans
    path.write_bytes(path.read_bytes().replace(b"Jinhai", "Jinhaï".encode("latin-1")))


def _drop_qty_column(book: Book) -> None:
    lines = book.pledges.read_text(encoding="utf-8").splitlines()
    book.pledges.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")


BAD = [
    Bad(
        "wrong_header",
        _edit("loans.csv", "outstanding,", "outstandng,"),
        "loans.csv:1: header: column 'outstandng' is not expected (did you mean 'outstanding'?)",
    ),
    Bad("missing_column", _drop_qty_column, "pledges.csv:1: header: column 'qty' is missing"),
    Bad(
        "bad_decimal",
        _edit("loans.csv", ",1200000.00,", ',"1,200,000.00",'),
        "loans.csv:2: column outstanding: got '1,200,000.00', want a decimal like 1000.00",
    ),
    Bad(
        "float_like_1e3",
        _edit("prices.csv", "steel-coil,2026-01-04,41640.00", "steel-coil,2026-01-04,1e3"),
        "prices.csv:5: column unit_price: got '1e3', want a decimal like 12.50",
    ),
    Bad(
        "negative_qty",
        _edit("pledges.csv", "steel-coil,40", "steel-coil,-40"),
        "pledges.csv:2: column qty: got '-40', want a whole number",
    ),
    Bad(
        "unknown_loan_in_pledges",
        _edit("pledges.csv", "L-2026-003,", "L-2026-009,"),
        "pledges.csv:5: column loan_id: got 'L-2026-009', want a loan_id of loans.csv",
    ),
    Bad(
        "static_pledge_without_lot",
        _edit("pledges.csv", "L-2026-001,WR-1001,", "L-2026-001,,"),
        "pledges.csv:2: column lot: got '', want a lot: loan L-2026-001 is a static pledge",
    ),
    Bad(
        "end_before_start",
        _edit("loans.csv", "2026-01-01,2026-06-30", "2026-01-01,2025-06-30"),
        "loans.csv:3: column end: got '2025-06-30', want on or after start 2026-01-01",
    ),
    Bad(
        "warning_not_above_liquidation",
        _edit("loans.csv", "0.65,1.25,1.05", "0.65,1.05,1.05"),
        "loans.csv:4: column warning_ratio: got '1.05', want more than liquidation_ratio 1.05",
    ),
    Bad("non_utf8", _latin1, "loans.csv:2: not UTF-8 (byte 0xef at offset"),
    Bad("empty_file", _write("prices.csv", b""), "prices.csv:1: empty file, want the header"),
    Bad(
        "duplicate_loan_id",
        _edit("loans.csv", "L-2026-003,", "L-2026-001,"),
        "loans.csv:4: column loan_id: got 'L-2026-001', want a unique id (also on line 2)",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[case.name for case in BAD])
def test_bad_file_is_named_with_line_and_column_and_nothing_is_imported(
    case: Bad, book: Book, db: Database
) -> None:
    case.mutate(book)
    with pytest.raises(LoanBookError) as info:
        import_csv(db, *book.paths(), now_ms=T0)
    assert any(case.want in problem for problem in info.value.problems), info.value.problems
    assert case.want in str(info.value)
    assert stored_rows(db) == dict.fromkeys(stored_rows(db), 0)
    assert list_versions(db) == []


MORE_BAD = [
    Bad("nan", _edit("loans.csv", ",1200000.00,", ",NaN,"), "loans.csv:2: column outstanding"),
    Bad(
        "money_finer_than_minor_unit",
        _edit("loans.csv", ",1200000.00,", ",1200000.001,"),
        "loans.csv:2: column outstanding: got '1200000.001', want at most 2 decimal places",
    ),
    Bad(
        "ratio_with_5_places",
        _edit("loans.csv", ",0.70,", ",0.70001,"),
        "loans.csv:2: column advance_rate: got '0.70001', want at most 4 decimal places",
    ),
    Bad(
        "advance_rate_above_1",
        _edit("loans.csv", ",0.70,", ",1.5,"),
        "loans.csv:2: column advance_rate: got '1.5', want more than 0, at most 1",
    ),
    Bad(
        "advance_rate_zero",
        _edit("loans.csv", ",0.70,", ",0,"),
        "loans.csv:2: column advance_rate: got '0', want more than 0",
    ),
    Bad(
        "liquidation_zero",
        _edit("loans.csv", "0.65,1.25,1.05", "0.65,1.25,0"),
        "loans.csv:4: column liquidation_ratio: got '0', want more than 0",
    ),
    Bad(
        "negative_money",
        _edit("loans.csv", ",1500000.00", ",-1500000.00"),
        "loans.csv:3: column min_value: got '-1500000.00', want a decimal like 1000.00",
    ),
    Bad("plus_sign", _edit("loans.csv", ",0.70,", ",+0.70,"), "loans.csv:2: column advance_rate"),
    Bad(
        "unknown_currency",
        _edit("loans.csv", ",wh-1,CNY,1200000.00", ",wh-1,XYZ,1200000.00"),
        "loans.csv:2: column currency: got 'XYZ', want an ISO 4217 currency code like EUR",
    ),
    Bad(
        "lowercase_currency",
        _edit("loans.csv", ",wh-1,CNY,1200000.00", ",wh-1,cny,1200000.00"),
        "loans.csv:2: column currency: got 'cny'",
    ),
    Bad(
        "yen_has_no_minor_unit",
        _edit("loans.csv", ",wh-1,CNY,1200000.00", ",wh-1,JPY,1200000.00"),
        "loans.csv:2: column outstanding: got '1200000.00', want at most 0 decimal places",
    ),
    Bad(
        "bad_warehouse_id",
        _edit("loans.csv", "Co.,wh-1,", "Co.,WH 1,"),
        "loans.csv:2: column warehouse_id: got 'WH 1', want a warehouse id",
    ),
    Bad(
        "impossible_date",
        _edit("loans.csv", "2026-01-15", "2026-02-30"),
        "loans.csv:4: column start: got '2026-02-30', want a calendar date",
    ),
    Bad(
        "us_date",
        _edit("prices.csv", "2026-01-02", "01/02/2026"),
        "prices.csv:3: column date: got '01/02/2026', want a date like 2026-01-31",
    ),
    Bad(
        "pledge_type_case",
        _edit("loans.csv", ",static,", ",Static,"),
        "loans.csv:2: column pledge_type: got 'Static', want static or dynamic",
    ),
    Bad(
        "static_qty_zero",
        _edit("pledges.csv", "steel-coil,40", "steel-coil,0"),
        "pledges.csv:2: column qty: got '0', want at least 1 for a static pledge",
    ),
    Bad(
        "qty_with_decimals",
        _edit("pledges.csv", "steel-coil,40", "steel-coil,40.0"),
        "pledges.csv:2: column qty: got '40.0', want a whole number",
    ),
    Bad(
        "lot_with_two_skus",
        _edit("pledges.csv", "L-2026-003,WR-1002,copper-cathode", "L-2026-003,WR-1002,steel-coil"),
        "pledges.csv:5: column sku: got 'steel-coil', want 'copper-cathode': lot WR-1002",
    ),
    Bad(
        "duplicate_pledge",
        _edit("pledges.csv", "L-2026-003,WR-1002,", "L-2026-001,WR-1002,"),
        "pledges.csv:5: column lot: loan L-2026-001 pledges this already on line 3",
    ),
    Bad(
        "pledged_sku_without_price",
        _edit("pledges.csv", "L-2026-002,,steel-coil", "L-2026-002,,nickel-plate"),
        "pledges.csv:4: column sku: got 'nickel-plate', which has no price in prices.csv",
    ),
    Bad(
        "one_sku_two_currencies",
        _edit("loans.csv", ",wh-1,CNY,300000.00", ",wh-1,USD,300000.00"),
        "pledges.csv:5: column sku: copper-cathode is pledged to L-2026-003 in USD",
    ),
    Bad(
        "duplicate_price",
        _edit("prices.csv", "steel-coil,2026-01-03,", "steel-coil,2026-01-02,"),
        "prices.csv:4: column date: steel-coil has a price for 2026-01-02 already on line 3",
    ),
    Bad(
        "lot_with_surrounding_space",
        _edit("pledges.csv", ",WR-1001,", ", WR-1001,"),
        "pledges.csv:2: column lot: got ' WR-1001', want 1-128 characters",
    ),
    Bad(
        "too_few_fields",
        _edit("pledges.csv", "L-2026-001,WR-1001,steel-coil,40", "L-2026-001,WR-1001,steel-coil"),
        "pledges.csv:2: got 3 fields, want 4 (loan_id,lot,sku,qty)",
    ),
    Bad(
        "columns_out_of_order",
        _edit("prices.csv", "sku,date,unit_price", "date,sku,unit_price"),
        "prices.csv:1: header: columns out of order: got date,sku,unit_price",
    ),
    Bad(
        "extra_column",
        _edit("pledges.csv", "loan_id,lot,sku,qty", "loan_id,lot,sku,qty,note"),
        "pledges.csv:1: header: column 'note' is not expected",
    ),
    Bad(
        "header_only_loans",
        _write("loans.csv", (",".join(LOANS_HEADER) + "\n").encode()),
        "loans.csv:2: no loans",
    ),
    Bad(
        "bad_quoting",
        _edit("loans.csv", '"Harbour Metals, Ltd."', '"Harbour "Metals", Ltd."'),
        "loans.csv:3: not valid CSV",
    ),
    Bad("only_a_bom", _write("pledges.csv", b"\xef\xbb\xbf"), "pledges.csv:1: empty file"),
    Bad(
        "utf16",
        lambda book: book.prices.write_bytes(book.prices.read_text().encode("utf-16")),
        "prices.csv:1: not UTF-8",
    ),
]


@pytest.mark.parametrize("case", MORE_BAD, ids=[case.name for case in MORE_BAD])
def test_more_bad_files_are_refused_with_file_line_and_column(case: Bad, book: Book) -> None:
    case.mutate(book)
    with pytest.raises(LoanBookError) as info:
        load_csv(*book.paths())
    assert any(case.want in problem for problem in info.value.problems), info.value.problems


def test_every_problem_in_every_file_is_reported_at_once(book: Book) -> None:
    book.edit("loans.csv", ",1200000.00,", ",1e6,")
    book.edit("loans.csv", "2026-01-01,2026-06-30", "2026-01-01,2025-06-30")
    book.edit("pledges.csv", "steel-coil,40", "steel-coil,-40")
    book.edit("prices.csv", "2026-01-02,41880.00", "2026-01-02,NaN")
    with pytest.raises(LoanBookError) as info:
        load_csv(*book.paths())
    problems = info.value.problems
    assert [p.split(": ")[0] for p in problems] == [
        "loans.csv:2",
        "loans.csv:3",
        "pledges.csv:2",
        "prices.csv:3",
    ], problems
    assert "4 problem(s)" in str(info.value)


def test_a_bad_loan_row_does_not_make_its_pledges_unknown(book: Book) -> None:
    book.edit("loans.csv", ",0.70,", ",7,")
    with pytest.raises(LoanBookError) as info:
        load_csv(*book.paths())
    assert len(info.value.problems) == 1, info.value.problems


def test_a_bad_header_is_not_followed_by_spurious_row_problems(book: Book) -> None:
    book.edit("loans.csv", "loan_id,", "loan,")
    with pytest.raises(LoanBookError) as info:
        load_csv(*book.paths())
    assert all(p.startswith("loans.csv:1: header") for p in info.value.problems), info.value


def test_missing_file_is_a_problem_not_a_crash(book: Book) -> None:
    book.prices.unlink()
    with pytest.raises(LoanBookError, match=r"prices.csv: cannot read"):
        load_csv(*book.paths())


# --- the store: versions ---------------------------------------------------------------------


def test_import_stores_version_1_as_rows_and_loads_it_back(book: Book, db: Database) -> None:
    assert import_csv(db, *book.paths(), now_ms=T0) == 1
    loaded = load_book(db)
    assert loaded.version == 1
    want = golden()
    assert (loaded.loans, loaded.pledges, loaded.prices) == (want.loans, want.pledges, want.prices)
    assert [str(loan.outstanding) for loan in loaded.loans] == [
        "1200000.00",
        "800000.00",
        "300000.00",
    ]  # exact decimal text, trailing zeros kept
    assert stored_rows(db) == {
        "loan_book_versions": 1,
        "loan_book_loans": 3,
        "loan_book_pledges": 4,
        "loan_book_prices": 60,
    }


def test_repay_creates_version_2_where_only_that_loan_changed(book: Book, db: Database) -> None:
    import_csv(db, *book.paths(), now_ms=T0)
    assert repay(db, "L-2026-002", Decimal("650000.00"), now_ms=T0 + DAY_MS) == 2
    v1, v2 = load_book(db, 1), load_book(db)
    assert v2.version == 2
    changed = [(a, b) for a, b in zip(v1.loans, v2.loans, strict=True) if a != b]
    assert len(changed) == 1
    old, new = changed[0]
    assert (old.loan_id, old.outstanding, new.outstanding) == (
        "L-2026-002",
        Decimal("800000.00"),
        Decimal("650000.00"),
    )
    assert (v1.pledges, v1.prices) == (v2.pledges, v2.prices)
    versions = list_versions(db)
    assert [(v.version, v.valid_from_ms) for v in versions] == [(1, T0), (2, T0 + DAY_MS)]
    assert "repay L-2026-002: outstanding 800000.00 -> 650000.00" in versions[1].note


def test_book_at_returns_the_version_in_force_at_that_time(book: Book, db: Database) -> None:
    import_csv(db, *book.paths(), now_ms=T0)
    repay(db, "L-2026-001", Decimal("1000000.00"), now_ms=T0 + DAY_MS)
    repay(db, "L-2026-001", Decimal("900000.00"), now_ms=T0 + 2 * DAY_MS)
    assert book_at(db, T0 - 1) is None

    def at(ms: int) -> tuple[int, Decimal]:
        found = book_at(db, ms)
        assert found is not None
        loan = found.loan("L-2026-001")
        assert loan is not None
        return found.version, loan.outstanding

    assert at(T0) == (1, Decimal("1200000.00"))
    assert at(T0 + DAY_MS - 1) == (1, Decimal("1200000.00"))
    assert at(T0 + DAY_MS) == (2, Decimal("1000000.00"))
    assert at(T0 + 2 * DAY_MS + 5) == (3, Decimal("900000.00"))


def test_a_second_import_is_a_new_version_and_the_old_one_stays(book: Book, db: Database) -> None:
    import_csv(db, *book.paths(), now_ms=T0)
    book.edit("loans.csv", ",300000.00,", ",250000.00,")
    assert import_csv(db, *book.paths(), now_ms=T0 + 10) == 2
    assert load_book(db, 1).loans[2].outstanding == Decimal("300000.00")
    assert load_book(db).loans[2].outstanding == Decimal("250000.00")


def test_refused_updates_store_nothing(book: Book, db: Database) -> None:
    with pytest.raises(LoanBookError, match="no loan book yet"):
        repay(db, "L-2026-001", Decimal(0), now_ms=T0)
    with pytest.raises(LoanBookError, match="no loan book yet"):
        load_book(db)
    import_csv(db, *book.paths(), now_ms=T0)
    refusals = [
        ("L-2026-404", Decimal("1.00"), T0 + 1, "is not in loan book version 1"),
        ("L-2026-001", Decimal("1.001"), T0 + 1, "at most 2 places"),
        ("L-2026-001", Decimal("-1"), T0 + 1, "want a decimal >= 0"),
        ("L-2026-001", Decimal("NaN"), T0 + 1, "want a decimal >= 0"),
        ("L-2026-001", Decimal("1.00"), T0 - 1, "before version 1"),
    ]
    for loan_id, amount, now, want in refusals:
        with pytest.raises(LoanBookError, match=want):
            repay(db, loan_id, amount, now_ms=now)
    assert len(list_versions(db)) == 1
    assert stored_rows(db)["loan_book_loans"] == 3
    with pytest.raises(LoanBookError, match="no loan book version 7"):
        load_book(db, 7)


def test_decimals_round_trip_exactly(book: Book, db: Database) -> None:
    book.edit("prices.csv", "2026-01-01,42000.00", "2026-01-01,0.300001")
    parsed = load_csv(*book.paths())
    save_book(db, parsed, now_ms=T0)
    assert load_book(db).prices[0].unit_price == Decimal("0.300001")
    repay(db, "L-2026-001", Decimal("0.10") + Decimal("0.20"), now_ms=T0)
    loan = load_book(db).loan("L-2026-001")
    assert loan is not None and str(loan.outstanding) == "0.30"


# --- the command line (SQLite) ---------------------------------------------------------------


def write_config(folder: Path) -> Path:
    path = folder / "anchor.toml"
    path.write_text(
        '[anchor]\norigin = "bank.example/test"\nkey_file = "anchor.key"\n'
        'store = "sqlite:anchor.db"\n\n[mqtt]\nhost = "127.0.0.1"\n',
        encoding="utf-8",
    )
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_import_list_show_repay(
    book: Book, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(write_config(tmp_path))
    files = ["--loans", str(book.loans), "--pledges", str(book.pledges)]
    files += ["--prices", str(book.prices)]
    code, out, err = run_cli(capsys, "loans", "import", "--config", config, *files)
    assert (code, err) == (0, "")
    assert "version 1: 3 loans, 4 pledges, 60 prices" in out

    code, out, _ = run_cli(capsys, "loans", "list", "--config", config, "--json")
    listed = json.loads(out)
    assert code == 0 and listed["version"] == 1
    assert [row["loan_id"] for row in listed["loans"]] == ["L-2026-001", "L-2026-002", "L-2026-003"]
    assert listed["loans"][0]["outstanding"] == "1200000.00"

    code, out, _ = run_cli(capsys, "loans", "list", "--config", config)
    assert code == 0 and "L-2026-002  Harbour Metals, Ltd.  wh-1  dynamic" in out

    code, out, _ = run_cli(capsys, "loans", "show", "L-2026-001", "--config", config, "--json")
    shown = json.loads(out)
    assert code == 0
    assert shown["pledges"] == [
        {"lot": "WR-1001", "sku": "steel-coil", "qty": 40},
        {"lot": "WR-1002", "sku": "copper-cathode", "qty": 25},
    ]
    assert shown["latest_prices"]["steel-coil"] == ["2026-01-30", "38520.00"]

    args = ["loans", "repay", "--config", config, "--loan", "L-2026-001"]
    code, out, _ = run_cli(capsys, *args, "--outstanding", "1000000.00")
    assert code == 0 and "CNY 1200000.00 -> 1000000.00 (version 2)" in out
    code, out, _ = run_cli(capsys, "loans", "show", "L-2026-001", "--config", config)
    assert code == 0 and "1000000.00" in out


def test_cli_exit_codes(book: Book, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path))
    book.edit("pledges.csv", "steel-coil,40", "steel-coil,-40")
    book.edit("loans.csv", "2026-01-01,2026-06-30", "2026-01-01,2025-06-30")
    files = ["--loans", str(book.loans), "--pledges", str(book.pledges)]
    files += ["--prices", str(book.prices)]
    code, out, err = run_cli(capsys, "loans", "import", "--config", config, *files)
    assert code == 1 and out == ""
    assert "2 problem(s)" in err and "pledges.csv:2: column qty" in err
    assert "loans.csv:3: column end" in err
    code, _, err = run_cli(capsys, "loans", "list", "--config", config)
    assert code == 1 and "no loan book yet" in err  # nothing was imported

    args = ["loans", "repay", "--config", config, "--loan", "L-2026-001", "--outstanding"]
    code, _, err = run_cli(capsys, *args, "1,000")
    assert code == 2 and "--outstanding" in err
    code, _, err = run_cli(capsys, "loans", "list", "--config", str(tmp_path / "missing.toml"))
    assert code == 2

    golden_files = golden_copy(tmp_path / "good")
    files = ["--loans", str(golden_files.loans), "--pledges", str(golden_files.pledges)]
    files += ["--prices", str(golden_files.prices)]
    assert run_cli(capsys, "loans", "import", "--config", config, *files)[0] == 0
    code, _, err = run_cli(capsys, "loans", "show", "L-404", "--config", config)
    assert code == 1 and "L-404" in err
    code, _, err = run_cli(capsys, *args[:-1], "--outstanding", "10.001")
    assert code == 1 and "at most 2 places" in err
