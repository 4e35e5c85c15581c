"""The loan-period collateral statement, from a real store: signed events through the
Ingestor and the Sequencer, a versioned loan book, alerts from the real rules and lifecycle,
checkpoints signed by the anchor key.

The scenario (loan L-1: 100 units of lot WR-1 pledged, 1 000 000.00 CNY outstanding,
warning line 1.30, liquidation line 1.10), day by day in March 2026, UTC:

    day 1  price 15 000.00 (book v1)      stock 100   value 1 500 000.00  coverage 1.5000 ok
    day 2  LOAD 10 (only 100 pledged)     stock 110   value 1 500 000.00  coverage 1.5000 ok
    day 3  price 12 500.00 (book v2)      stock 110   value 1 250 000.00  coverage 1.2500 warning
    day 4                                              value 1 250 000.00  coverage 1.2500 warning
    day 5  theft: UNLOAD 40, no token     stock  70   value   875 000.00  coverage 0.8750 breach
    day 6  COUNT 70 confirms              stock  70   value   875 000.00  coverage 0.8750 breach
    day 7  repaid to 500 000.00 (book v3)             value   875 000.00  coverage 1.7500 ok

Lot WR-9 (loan L-2) moves too and must not appear. Checkpoints: before the loan (Feb 28),
at drawdown (Mar 2: the first cut on or after the start), Mar 6 and Mar 8 (the latest).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest

from anchor import keyfile
from anchor.alerts.lifecycle import apply_conditions
from anchor.alerts.model import Scope
from anchor.config import LogSection
from anchor.ingest import Ingestor, Message
from anchor.loanbook import Loan, LoanBook, Pledge, PledgeType, Price
from anchor.loans import LoanBookError, book_at, repay, save_book
from anchor.log import Sequencer
from anchor.reconcile.batch import events_frame, snapshot_from_frame
from anchor.reconcile.collateral import StockIndex, coverage_conditions, lot_pledges
from anchor.reconcile.conditions import Rule
from anchor.reconcile.rules import RuleSettings, evaluate
from anchor.reconcile.snapshot import StateConfig
from anchor.registry import enrol, load_keys
from anchor.statement import (
    DayStatus,
    LogTrust,
    PeriodError,
    Statement,
    StatementError,
    UnknownLoan,
    build_statement,
    collateral_value,
    day_end_ms,
    movements_csv,
    write_statement,
)
from anchor.store.db import Database
from anchor.store.schema import migrate
from pledgewatch.checkpoint import SignedNote, cosign, verify_checkpoint, with_signatures
from pledgewatch.cli import main
from pledgewatch.errors import ProofError
from pledgewatch.events import ZERO_HASH, Event, Kind, SignedEvent
from pledgewatch.merkle import verify_consistency
from pledgewatch.signing import SigningKey, sign_event
from pledgewatch.topics import events_topic

ORIGIN = "bank.example/statement-test"
WH, GW = "wh-1", "gw-1"
BORROWER = 'Jinhai <b>Steel</b> & "Sons"'
MARCH = [dt.date(2026, 3, d) for d in range(1, 8)]
HOUR = 3_600_000


def at(day: dt.date, hour: int = 0) -> int:
    return (day - dt.date(1970, 1, 1)).days * 86_400_000 + hour * HOUR


FEB_26, FEB_27, FEB_28 = (dt.date(2026, 2, d) for d in (26, 27, 28))
D = {i + 1: day for i, day in enumerate(MARCH)} | {8: dt.date(2026, 3, 8)}


def loan(loan_id: str, outstanding: str, end: dt.date, borrower: str = "Other Co") -> Loan:
    return Loan(
        loan_id=loan_id,
        borrower=borrower,
        warehouse=WH,
        currency="CNY",
        outstanding=Decimal(outstanding),
        start=D[1],
        end=end,
        pledge_type=PledgeType.STATIC,
        advance_rate=Decimal("0.70"),
        warning_ratio=Decimal("1.30"),
        liquidation_ratio=Decimal("1.10"),
        min_value=Decimal("0.00"),
    )


def book(*prices: Price) -> LoanBook:
    return LoanBook(
        loans=(
            loan("L-1", "1000000.00", dt.date(2026, 12, 31), BORROWER),
            loan("L-2", "9000000.00", dt.date(2026, 6, 30)),
        ),
        pledges=(Pledge("L-1", "WR-1", "steel-coil", 100), Pledge("L-2", "WR-9", "steel-coil", 50)),
        prices=prices,
        version=0,
    )


@dataclass
class Portal:
    """One RFID portal of gw-1: a gapless, hash-chained, signed event sequence."""

    key: SigningKey
    seq: int = 0
    prev: str = ZERO_HASH
    events: list[SignedEvent] = field(default_factory=list)

    def move(self, kind: Kind, ts_ms: int, lot: str, qty: int, bay: str = "A1") -> SignedEvent:
        self.seq += 1
        event = Event(
            kind=kind,
            warehouse=WH,
            gateway=GW,
            device="portal-1",
            seq=self.seq,
            prev=self.prev,
            ts_ms=ts_ms,
            bay=bay,
            sku="steel-coil",
            lot=lot,
            qty=qty,
        )
        signed = sign_event(event, self.key)
        self.prev = signed.event_id
        self.events.append(signed)
        return signed


@dataclass
class Rig:
    db: Database
    folder: Path
    config: Path
    anchor_key: SigningKey
    trust: LogTrust
    portal: Portal
    checkpoint_sizes: list[int]


def store_events(db: Database, signed: list[SignedEvent], now_ms: int) -> None:
    messages = [Message(events_topic(WH, GW), s.to_wire()) for s in signed]
    with db.transaction() as tx:
        result = Ingestor(load_keys(db.read()), "worker-1").process(tx, messages, now_ms)
    assert dict(result.counts) == {"stored": len(signed)}


def raise_alerts(db: Database, portal: Portal, day: dt.date) -> None:
    """What the reconciler would do at the end of ``day``: evaluate, then open/resolve."""
    cutoff = day_end_ms(day)
    frame = events_frame((s.event_id, s.event) for s in portal.events)
    snapshot = snapshot_from_frame(frame, cutoff, StateConfig())
    current = book_at(db, cutoff)
    assert current is not None
    found = evaluate(snapshot, current, [], [], RuleSettings(), cutoff)
    apply_conditions(db, found, cutoff, scope=Scope.of([WH]))


def build_rig(folder: Path) -> Rig:
    db = Database(f"sqlite:///{folder / 'anchor.db'}")
    db.open()
    migrate(db)
    anchor_key = keyfile.generate(folder / "anchor.key")
    sequencer = Sequencer(db, ORIGIN, anchor_key, LogSection(10, 1, 300))
    portal = Portal(SigningKey.generate())
    enrol(db, WH, GW, portal.key.public_key, now_ms=at(FEB_26))
    save_book(db, book(Price("steel-coil", FEB_27, Decimal("15000.00"))), now_ms=at(FEB_27))
    sizes = []

    def batch(now: int, *moves: tuple[Kind, int, str, int]) -> None:
        store_events(db, [portal.move(*m) for m in moves], now)
        sequencer.step(now)
        sizes.append(db.read().one("SELECT MAX(size) FROM checkpoints")[0])

    batch(
        at(FEB_28, 12),
        (Kind.LOAD, at(FEB_28, 10), "WR-1", 100),
        (Kind.LOAD, at(FEB_28, 11), "WR-9", 50),
    )
    batch(
        at(D[2], 12),
        (Kind.LOAD, at(D[2], 9), "WR-1", 10),
        (Kind.LOAD, at(D[2], 10), "WR-9", 5),
    )
    raise_alerts(db, portal, D[2])
    prices = (Price("steel-coil", FEB_27, Decimal("15000.00")),)
    prices += (Price("steel-coil", D[3], Decimal("12500.00")),)
    save_book(db, book(*prices), now_ms=at(D[3], 8))
    raise_alerts(db, portal, D[3])  # COVERAGE_WARNING opens
    batch(
        at(D[6], 16),
        (Kind.UNLOAD, at(D[5], 10), "WR-1", 40),  # the theft: no release token
        (Kind.COUNT, at(D[6], 15), "WR-1", 70),
    )
    raise_alerts(db, portal, D[5])  # warning resolved; breach, shortfall, release open
    repay(db, "L-1", Decimal("500000.00"), now_ms=at(D[7], 12))
    raise_alerts(db, portal, D[7])  # breach resolved
    batch(at(D[8], 10), (Kind.LOAD, at(D[8], 9), "WR-1", 5))  # after the period
    config = folder / "anchor.toml"
    config.write_text(
        f'[anchor]\norigin = "{ORIGIN}"\nkey_file = "anchor.key"\nstore = "sqlite:anchor.db"\n'
        '\n[mqtt]\nhost = "127.0.0.1"\n',
        encoding="utf-8",
    )
    trust = LogTrust(ORIGIN, anchor_key.public_key)
    return Rig(db, folder, config, anchor_key, trust, portal, sizes)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    built = build_rig(tmp_path_factory.mktemp("statement"))
    yield built
    built.db.close()


@pytest.fixture(scope="module")
def march(rig: Rig) -> Statement:
    return build_statement(rig.db, "L-1", D[1], D[7], rig.trust, at(D[8], 12))


@pytest.fixture(scope="module")
def written(rig: Rig, march: Statement) -> Path:
    out = rig.folder / "out-march"
    write_statement(march, out)
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# --- coverage --------------------------------------------------------------------------------

WANT_DAILY = [
    ("2026-03-01", "1500000.00", "1000000.00", "1.5000", "ok", "1"),
    ("2026-03-02", "1500000.00", "1000000.00", "1.5000", "ok", "1"),
    ("2026-03-03", "1250000.00", "1000000.00", "1.2500", "warning", "2"),
    ("2026-03-04", "1250000.00", "1000000.00", "1.2500", "warning", "2"),
    ("2026-03-05", "875000.00", "1000000.00", "0.8750", "breach", "2"),
    ("2026-03-06", "875000.00", "1000000.00", "0.8750", "breach", "2"),
    ("2026-03-07", "875000.00", "500000.00", "1.7500", "ok", "3"),
]


def test_daily_csv_is_the_hand_computed_coverage(written: Path) -> None:
    rows = read_csv(written / "statement.csv")
    names = ("date", "collateral_value", "outstanding", "coverage", "status", "book_version")
    got = [tuple(r[name] for name in names) for r in rows]
    assert got == WANT_DAILY
    assert {(r["warning_ratio"], r["liquidation_ratio"]) for r in rows} == {("1.30", "1.10")}
    assert list(rows[0]) == [
        "date",
        "collateral_value",
        "outstanding",
        "coverage",
        "warning_ratio",
        "liquidation_ratio",
        "status",
        "book_version",
        "unpriced",
    ]


def test_valuation_agrees_with_the_reconcilers_coverage_rule(rig: Rig, march: Statement) -> None:
    """``collateral_value`` re-states collateral.py's private valuation: pin them together."""
    frame = events_frame((s.event_id, s.event) for s in rig.portal.events)
    want_rule = {
        DayStatus.OK: None,
        DayStatus.WARNING: Rule.COVERAGE_WARNING,
        DayStatus.BREACH: Rule.COVERAGE_BREACH,
    }
    for day in march.days:
        book_then = book_at(rig.db, day.at_ms)
        assert book_then is not None and book_then.version == day.book_version
        index = StockIndex(snapshot_from_frame(frame, day.at_ms, StateConfig()))
        found = coverage_conditions(
            book_then, lot_pledges(book_then), index, RuleSettings(), day.at_ms
        )
        rules = [c.rule for c in found if c.loan_id == "L-1"]
        assert rules == ([] if want_rule[day.status] is None else [want_rule[day.status]])
        for c in found:
            if c.loan_id == "L-1":
                assert f"coverage {day.coverage:.4f} " in c.message
        loan_then = book_then.loan("L-1")
        assert loan_then is not None
        valued = collateral_value(book_then, loan_then, index, day.day)
        assert valued.value == day.collateral_value and valued.unpriced == ()


def test_dynamic_pledges_and_missing_prices_are_valued_as_the_reconciler_does(rig: Rig) -> None:
    cutoff = day_end_ms(D[7])
    frame = events_frame((s.event_id, s.event) for s in rig.portal.events)
    index = StockIndex(snapshot_from_frame(frame, cutoff, StateConfig()))
    dynamic = dataclasses.replace(
        loan("L-3", "2000000.00", dt.date(2026, 12, 31)),
        pledge_type=PledgeType.DYNAMIC,
        min_value=Decimal("1700000.00"),
    )
    priced = LoanBook(
        (dynamic,),
        (Pledge("L-3", None, "steel-coil", 0),),
        (Price("steel-coil", D[3], Decimal("12500.00")),),
    )
    valued = collateral_value(priced, dynamic, index, D[7])
    assert valued.value == Decimal("1562500.00")  # every lot of the SKU: 70 (WR-1) + 55 (WR-9)
    (found,) = coverage_conditions(priced, [], index, RuleSettings(), cutoff)
    assert "collateral 1562500.00 CNY" in found.message
    unpriced = dataclasses.replace(priced, prices=())
    assert collateral_value(unpriced, dynamic, index, D[7]).unpriced == ("steel-coil",)
    (found,) = coverage_conditions(unpriced, [], index, RuleSettings(), cutoff)
    assert "collateral 0.00 CNY" in found.message and "no price for steel-coil" in found.message


# --- movements and alerts ---------------------------------------------------------------------


def test_movements_are_the_loans_lots_in_the_period(rig: Rig, written: Path) -> None:
    rows = read_csv(written / "movements.csv")
    got = [(r["time"], r["kind"], r["lot"], r["qty"], r["bay"], r["release"]) for r in rows]
    assert got == [
        ("2026-03-02T09:00:00.000Z", "LOAD", "WR-1", "10", "A1", ""),
        ("2026-03-05T10:00:00.000Z", "UNLOAD", "WR-1", "40", "A1", ""),
        ("2026-03-06T15:00:00.000Z", "COUNT", "WR-1", "70", "A1", ""),
    ]
    stored = dict(rig.db.read().all("SELECT event_id, leaf_index FROM events"))
    for r in rows:
        assert int(r["leaf_index"]) == stored[r["event_id"]]  # each one is in the log


def test_csv_text_that_a_spreadsheet_would_run_is_defused(march: Statement) -> None:
    evil = dataclasses.replace(march.movements[0], lot="=HYPERLINK(1)", bay="@A1")
    text = movements_csv(dataclasses.replace(march, movements=(evil,)))
    row = next(csv.DictReader(io.StringIO(text)))
    assert (row["lot"], row["bay"]) == ("'=HYPERLINK(1)", "'@A1")


def test_alerts_are_those_of_the_loan_active_in_the_period(rig: Rig, march: Statement) -> None:
    got = {(a.rule, a.state.value) for a in march.alerts}
    assert got == {
        (Rule.COVERAGE_WARNING, "resolved"),
        (Rule.COVERAGE_BREACH, "resolved"),
        (Rule.SHORTFALL, "open"),
        (Rule.UNAUTHORIZED_RELEASE, "open"),
    }
    assert all(a.loan_id == "L-1" for a in march.alerts)
    everyone = rig.db.read().all("SELECT DISTINCT loan_id, rule FROM alerts")
    assert (None, "DEVICE_SILENT") in everyone and ("L-2", "COVERAGE_BREACH") in everyone
    late = build_statement(rig.db, "L-1", D[6], D[7], rig.trust, at(D[8], 12))
    assert Rule.COVERAGE_WARNING not in {a.rule for a in late.alerts}  # resolved on day 5


# --- the consistency proof --------------------------------------------------------------------


def test_consistency_proof_verifies_independently(rig: Rig, written: Path) -> None:
    doc = json.loads((written / "consistency.json").read_text(encoding="utf-8"))
    assert doc["format"] == "pledgewatch-statement-consistency/v1"
    # the drawdown checkpoint: the first cut on or after the loan's start (not Feb 28's)
    assert (doc["old_size"], doc["new_size"]) == (rig.checkpoint_sizes[1], rig.checkpoint_sizes[-1])
    public = rig.anchor_key.public_key
    old = verify_checkpoint(doc["old"]["note"].encode(), ORIGIN, public, origin=ORIGIN)
    new = verify_checkpoint(doc["new"]["note"].encode(), ORIGIN, public, origin=ORIGIN)
    assert (old.size, new.size) == (doc["old_size"], doc["new_size"])
    proof = [bytes.fromhex(h) for h in doc["proof"]]
    assert proof
    verify_consistency(old.size, new.size, proof, old.root, new.root)
    for i in range(len(proof)):  # any flipped bit is caught
        bad = [*proof]
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        with pytest.raises(ProofError):
            verify_consistency(old.size, new.size, bad, old.root, new.root)
    with pytest.raises(ProofError):
        verify_consistency(old.size, new.size, proof[:-1], old.root, new.root)


def test_a_rewritten_log_is_refused(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    try:
        rig.db.read().execute("UPDATE leaves SET leaf_hash = ? WHERE leaf_index = 5", (b"\1" * 32,))
        with pytest.raises(StatementError, match="not consistent"):
            build_statement(rig.db, "L-1", D[1], D[7], rig.trust, at(D[8], 12))
        other = LogTrust(ORIGIN, SigningKey.generate().public_key)
        with pytest.raises(StatementError, match="does not verify"):
            build_statement(rig.db, "L-1", D[1], D[7], other, at(D[8], 12))
    finally:
        rig.db.close()


def test_a_witnessed_checkpoint_is_verified_and_marked(tmp_path: Path) -> None:
    rig = build_rig(tmp_path)
    witness = SigningKey.generate()
    try:
        size = rig.checkpoint_sizes[1]  # the drawdown checkpoint
        (text,) = rig.db.read().one("SELECT note FROM checkpoints WHERE size = ?", (size,))
        note = SignedNote.parse(text.encode())
        cosigned = with_signatures(
            note, [cosign(note.body, "bank-witness", witness, 1_772_400_000)]
        )
        with rig.db.transaction() as tx:
            tx.execute(
                "UPDATE checkpoints SET cosigned_note = ? WHERE size = ?",
                (cosigned.to_bytes().decode(), size),
            )
        trust = dataclasses.replace(
            rig.trust, witness_name="bank-witness", witness_key=witness.public_key
        )
        made = build_statement(rig.db, "L-1", D[1], D[7], trust, 0)
        assert made.consistency.old.witnessed and not made.consistency.new.witnessed
        assert made.consistency.old.note == cosigned.to_bytes()
        impostor = dataclasses.replace(trust, witness_key=SigningKey.generate().public_key)
        with pytest.raises(StatementError, match="does not verify"):
            build_statement(rig.db, "L-1", D[1], D[7], impostor, 0)
    finally:
        rig.db.close()


# --- the page ---------------------------------------------------------------------------------


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def having(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and (cls is None or a.get("class") == cls)]


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def test_html_is_self_contained_with_one_point_per_day(written: Path, march: Statement) -> None:
    page = parse(written / "statement.html")
    assert len(page.having("svg")) == 1
    assert len(page.having("circle", "coverage-point")) == len(MARCH)
    (line,) = page.having("polyline", "coverage-line")
    assert len((line["points"] or "").split()) == len(MARCH)
    assert page.having("polyline", "warning-line") and page.having("polyline", "liquidation-line")
    heights = {
        p.split(",")[1]
        for p in (page.having("polyline", "warning-line")[0]["points"] or "").split()
    }
    assert len(heights) == 1  # horizontal
    assert not page.having("script") and not page.having("link") and not page.having("img")
    assert all("src" not in a and "href" not in a for _, a in page.tags)
    text = "".join(page.text)
    assert BORROWER in text  # shown as text …
    assert not page.having("b")  # … never as markup
    for m in march.movements:
        assert m.event_id in text
    assert march.consistency.old.note.decode().split("\n")[0] in text
    for h in march.consistency.proof:
        assert h.hex() in text
    assert "COVERAGE_BREACH" in text and "day (UTC" in text and "coverage (collateral" in text


# --- empty periods, bad input, the command line ----------------------------------------------


def test_a_period_before_the_book_is_all_no_book(rig: Rig) -> None:
    empty = build_statement(rig.db, "L-1", dt.date(2026, 2, 20), dt.date(2026, 2, 22), rig.trust, 0)
    assert [d.status for d in empty.days] == [DayStatus.NO_BOOK] * 3
    assert empty.movements == () and empty.alerts == ()
    assert empty.loan.borrower == BORROWER  # the header comes from the latest book
    out = write_statement(empty, rig.folder / "out-empty")
    page = parse(out[0])
    assert page.having("circle", "coverage-point") == []
    assert "no coverage to plot" in "".join(page.text)
    rows = read_csv(out[1])
    assert [(r["date"], r["coverage"], r["status"]) for r in rows] == [
        ("2026-02-20", "", "no_book"),
        ("2026-02-21", "", "no_book"),
        ("2026-02-22", "", "no_book"),
    ]
    assert read_csv(out[2]) == []


def test_a_quiet_period_keeps_valuing_the_stock(rig: Rig) -> None:
    quiet = build_statement(rig.db, "L-1", dt.date(2026, 4, 10), dt.date(2026, 4, 10), rig.trust, 0)
    (day,) = quiet.days
    assert quiet.movements == ()
    # 75 in stock (70 + the LOAD of Mar 8), 12 500.00 each, 500 000.00 outstanding
    assert (day.collateral_value, day.coverage, day.status) == (
        Decimal("937500.00"),
        Decimal("1.875"),
        DayStatus.OK,
    )


def test_bad_periods_and_unknown_loans(rig: Rig) -> None:
    with pytest.raises(PeriodError, match="end on or after"):
        build_statement(rig.db, "L-1", D[2], D[1], rig.trust, 0)
    with pytest.raises(PeriodError, match="at most 366"):
        build_statement(rig.db, "L-1", D[1], dt.date(2027, 3, 2), rig.trust, 0)
    with pytest.raises(UnknownLoan, match="'L-404' is not in the loan book"):
        build_statement(rig.db, "L-404", D[1], D[7], rig.trust, 0)


def test_no_loan_book_and_no_checkpoint(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    db.open()
    try:
        migrate(db)
        trust = LogTrust(ORIGIN, SigningKey.generate().public_key)
        with pytest.raises(LoanBookError, match="no loan book yet"):
            build_statement(db, "L-1", D[1], D[7], trust, 0)
        save_book(db, book(Price("steel-coil", FEB_27, Decimal("15000.00"))), now_ms=at(FEB_27))
        with pytest.raises(StatementError, match="no checkpoint yet"):
            build_statement(db, "L-1", D[1], D[7], trust, 0)
    finally:
        db.close()


def test_cli_writes_the_four_files(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    out = rig.folder / "out-cli"
    args = ["statement", "L-1", "--from", "2026-03-01", "--to", "2026-03-07"]
    code = main([*args, "--config", str(rig.config), "-o", str(out)])
    captured = capsys.readouterr()
    assert (code, captured.err) == (0, "")
    assert "2 ok" not in captured.out and "3 ok, 2 warning, 2 breach" in captured.out
    assert sorted(os.listdir(out)) == [
        "consistency.json",
        "movements.csv",
        "statement.csv",
        "statement.html",
    ]
    rows = read_csv(out / "statement.csv")
    assert [(r["date"], r["coverage"], r["status"]) for r in rows] == [
        (w[0], w[3], w[4]) for w in WANT_DAILY
    ]


MARCH_ARGS = ("--from", "2026-03-01", "--to", "2026-03-07")


def test_cli_exit_codes(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--config", str(rig.config), "-o", str(rig.folder / "out-bad")]
    code = main(["statement", "L-404", "--from", "2026-03-01", "--to", "2026-03-07", *base])
    assert code == 1 and "loan 'L-404' is not in the loan book" in capsys.readouterr().err
    code = main(["statement", "L-1", "--from", "2026-03-07", "--to", "2026-03-01", *base])
    assert code == 2 and "end on or after the start" in capsys.readouterr().err
    wrong = SigningKey.generate().public_key.hex()
    code = main(["statement", "L-1", *MARCH_ARGS, *base, "--log-key", wrong])
    assert code == 1 and "does not verify" in capsys.readouterr().err
    code = main(["statement", "L-1", *MARCH_ARGS, *base, "--log-key", "abc"])
    assert code == 2 and "64 hex digits" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["statement", "L-1", "--from", "March 1", "--to", "2026-03-07", *base])
    assert exit_info.value.code == 2
    assert not (rig.folder / "out-bad").exists()  # nothing written on any failure
