"""Each reconciliation rule on synthetic event sequences: it fires exactly when it should,
clears when its condition clears, and counts nothing twice. Every snapshot here is checked
to be the same from the incremental state (in order and reversed) and from the batch path.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from decimal import Decimal

import pytest
from test_reconcile_state import CONFIG, T0, Feed, H, both

from anchor.chain import ChainRecord
from anchor.errors import AnchorError, ConfigError
from anchor.loanbook import Loan, LoanBook, Pledge, PledgeType, Price
from anchor.reconcile.conditions import Category, Condition, Rule, Severity
from anchor.reconcile.rules import ChainRecordRow, RuleSettings, evaluate
from anchor.reconcile.settings import day_of
from pledgewatch.events import Kind
from pledgewatch.release import ReleaseToken

DAY = 24 * H
APRIL = dt.date(2024, 4, 1)
STEEL = Decimal("4000.00")
QUIET = RuleSettings(silent_after_ms=365 * DAY, silent_major_after_ms=365 * DAY)
LOUD = RuleSettings()
EMPTY = LoanBook((), (), ())


def loan(loan_id: str = "L-1", **changes: object) -> Loan:
    base = Loan(
        loan_id=loan_id,
        borrower="Jinhai Steel Trading Co.",
        warehouse="wh-1",
        currency="CNY",
        outstanding=Decimal("100000.00"),
        start=APRIL,
        end=dt.date(2024, 6, 30),
        pledge_type=PledgeType.STATIC,
        advance_rate=Decimal("0.7"),
        warning_ratio=Decimal("1.3"),
        liquidation_ratio=Decimal("1.1"),
        min_value=Decimal(0),
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def book(
    loans: Sequence[Loan] = (),
    pledges: Sequence[Pledge] = (),
    prices: Sequence[Price] = (),
) -> LoanBook:
    """Default: L-1 pledges 40 steel coils of lot wr-1 (160 000 CNY, coverage 1.6)."""
    return LoanBook(
        tuple(loans) or (loan(),),
        tuple(pledges) or (Pledge("L-1", "wr-1", "steel", 40),),
        tuple(prices) or (Price("steel", APRIL, STEEL),),
    )


def token(token_id: str = "rel-1", **changes: object) -> ReleaseToken:
    base = ReleaseToken(token_id, "wh-1", "L-1", "wr-1", 10, T0, T0 + 10 * DAY)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def run(
    feed: Feed,
    loan_book: LoanBook | None = None,
    tokens: Sequence[ReleaseToken] = (),
    *,
    at_ms: int | None = None,
    records: Sequence[ChainRecordRow] = (),
    settings: RuleSettings | None = None,
    bad: Mapping[str, int] | None = None,
) -> list[Condition]:
    """Evaluate at ``at_ms`` (default: the last event); devices are never silent unless
    ``settings`` say otherwise."""
    at = at_ms if at_ms is not None else max(e.ts_ms for _, e in feed.events)
    snapshot = both(feed.events, CONFIG, at)
    extra = {} if bad is None else {"bad_signatures": bad}
    rules = settings or QUIET
    return evaluate(snapshot, loan_book or book(), tokens, records, rules, at, **extra)


def only(conditions: list[Condition], rule: Rule) -> list[Condition]:
    return [c for c in conditions if c.rule is rule]


def stocked(qty: int = 40) -> Feed:
    """wr-1 counted at T0 with ``qty`` coils, the gateway's devices beating hourly."""
    f = Feed()
    f.count(T0, qty)
    return f


def beats(f: Feed, until_ms: int, devices: Sequence[str] = ("portal-in",)) -> Feed:
    for t in range(T0, until_ms + 1, H):
        for d in devices:
            f.beat(t, d)
    return f


# SHORTFALL ---------------------------------------------------------------------------------


def test_shortfall_fires_below_the_pledge_and_a_stocktake_restoring_it_clears_it() -> None:
    f = stocked()
    assert run(f) == []
    gone = f.unload(T0 + H, 3, release="rel-1")  # authorised: the pledge shrinks with it
    assert run(f, tokens=[token()]) == []
    counted = f.count(T0 + 2 * H, 36)  # the stocktake finds one coil fewer
    (c,) = run(f, tokens=[token()])
    assert (c.rule, c.severity, c.loan_id, c.lot, c.subject) == (
        Rule.SHORTFALL,
        Severity.MAJOR,
        "L-1",
        "wr-1",
        "lot:wr-1",
    )
    assert c.message == (
        "lot wr-1 (steel) of loan L-1: book stock 36, pledge needs 37 (40 pledged - 3 released "
        "with tokens): short 1 (2.7 %)"
    )
    assert c.evidence == (counted,) and c.observed_ms == T0 + 2 * H
    assert c.rule.category is Category.BUSINESS
    assert gone not in c.evidence  # the count set the stock; the earlier unload did not
    f.count(T0 + 3 * H, 37)  # recounted: it was there after all
    assert run(f, tokens=[token()]) == []


@pytest.mark.parametrize(
    ("qty", "severity"), [(39, Severity.WARNING), (38, Severity.MAJOR), (36, Severity.CRITICAL)]
)
def test_shortfall_severity_follows_the_missing_share(qty: int, severity: Severity) -> None:
    steps = dataclasses.replace(QUIET, shortfall_major_pct=Decimal(5))
    (c,) = run(stocked(qty), settings=steps)  # 2.5 %, 5 %, 10 % missing
    assert c.rule is Rule.SHORTFALL and c.severity is severity


def test_shortfall_sums_a_lot_over_bays_in_the_loans_warehouse_only() -> None:
    f = Feed()
    f.count(T0, 25, bay="a1")
    f.count(T0, 15, bay="a2")
    other = Feed("wh-2", "gw-2")
    other.count(T0, 40)
    assert run(f) == []
    assert only(run(other), Rule.SHORTFALL) != []  # wh-2 stock does not cover wh-1's loan
    f.events.extend(other.events)
    assert run(f) == []


def test_a_fully_released_lot_needs_nothing_even_below_zero() -> None:
    f = stocked(10)
    f.unload(T0 + H, 10, release="rel-1")
    f.unload(T0 + 2 * H, 30, release="rel-2")  # the book goes to -30: a data problem, not a pledge
    tokens = [token(), token("rel-2", qty=30)]
    assert only(run(f, tokens=tokens), Rule.SHORTFALL) == []


def test_shortfall_only_while_the_loan_is_in_force() -> None:
    f = stocked(30)
    assert only(run(f), Rule.SHORTFALL) != []
    later = book(loans=[loan(start=APRIL + dt.timedelta(days=1))])
    assert run(f, later) == []
    assert run(f, book(loans=[loan(end=APRIL - dt.timedelta(days=1))])) == []


# UNAUTHORIZED_RELEASE ----------------------------------------------------------------------


def test_an_unload_without_a_token_is_unauthorised_even_if_stock_still_covers() -> None:
    f = stocked(50)
    gone = f.unload(T0 + H, 5)
    (c,) = run(f)
    assert (c.rule, c.severity, c.subject, c.loan_id, c.lot) == (
        Rule.UNAUTHORIZED_RELEASE,
        Severity.CRITICAL,
        f"unload:{gone}",
        "L-1",
        "wr-1",
    )
    assert c.evidence == (gone,) and c.observed_ms == T0 + H
    assert c.message == (
        "5 units of lot wr-1 left bay a1 at 2024-04-01T01:00:00Z while pledged to loan L-1: "
        "no release token"
    )


@pytest.mark.parametrize(
    ("bad", "severity", "why"),
    [
        (token("rel-9"), Severity.CRITICAL, "release token rel-1 is unknown to the bank"),
        (token(warehouse="wh-2"), Severity.CRITICAL, "token rel-1 is for warehouse wh-2"),
        (token(lot="wr-2"), Severity.CRITICAL, "token rel-1 is for lot wr-2"),
        (token(loan_id="L-2"), Severity.CRITICAL, "names loan L-2, which does not pledge"),
        (token(expires_ms=T0 + H), Severity.MAJOR, "token rel-1 expired at 2024-04-01T01:00"),
    ],
)
def test_a_token_that_does_not_fit_the_unload(
    bad: ReleaseToken, severity: Severity, why: str
) -> None:
    f = stocked(50)
    gone = f.unload(T0 + H, 5, release="rel-1")
    (c,) = run(f, tokens=[bad])
    assert (c.rule, c.severity, c.subject) == (
        Rule.UNAUTHORIZED_RELEASE,
        severity,
        f"unload:{gone}",
    )
    assert why in c.message
    assert run(f, tokens=[token()]) == []


def test_unloads_beyond_a_tokens_qty_each_fire_and_count_only_the_allowed_part() -> None:
    f = stocked(40)
    first = f.unload(T0 + H, 6, release="rel-1")
    second = f.unload(T0 + 2 * H, 6, release="rel-1")  # 12 > 10
    third = f.unload(T0 + 3 * H, 1, release="rel-1")
    found = run(f, tokens=[token()])
    releases = only(found, Rule.UNAUTHORIZED_RELEASE)
    assert [(c.subject, c.severity, c.evidence) for c in releases] == sorted(
        [
            (f"unload:{second}", Severity.MAJOR, (second, first)),
            (f"unload:{third}", Severity.MAJOR, (third, first, second)),
        ]
    )
    assert "token rel-1 allows 10, 6 used before, this unload takes 6" in releases[0].message or (
        "token rel-1 allows 10, 6 used before, this unload takes 6" in releases[1].message
    )
    (short,) = only(found, Rule.SHORTFALL)  # 27 left, 40 - 10 released = 30 needed
    assert "book stock 27, pledge needs 30 (40 pledged - 10 released" in short.message


def test_releases_only_count_for_pledged_lots_during_the_loan() -> None:
    f = stocked(40)
    f.load(T0, 9, lot="own-1")
    f.unload(T0 + H, 9, lot="own-1")  # not pledged
    assert run(f) == []
    before = book(loans=[loan(start=APRIL + dt.timedelta(days=1))])
    f.unload(T0 + 2 * H, 1)
    assert only(run(f, before, at_ms=T0 + DAY + H), Rule.UNAUTHORIZED_RELEASE) == []


def test_a_ratifying_token_issued_afterwards_clears_the_release() -> None:
    f = stocked(50)
    f.unload(T0 + H, 5, release="rel-1")
    assert len(run(f)) == 1
    late = token(issued_ms=T0 + 5 * H, expires_ms=T0 + 6 * H)
    assert run(f, tokens=[late]) == []


def test_one_lot_in_two_loans_needs_one_token_and_reports_the_other_loan() -> None:
    two = book(
        loans=[loan("L-1"), loan("L-2")],
        pledges=[Pledge("L-1", "wr-1", "steel", 20), Pledge("L-2", "wr-1", "steel", 20)],
    )
    f = stocked(40)
    gone = f.unload(T0 + H, 2, release="rel-1")
    found = run(f, two)
    (release,) = only(found, Rule.UNAUTHORIZED_RELEASE)
    assert release.loan_id == "L-1" and "(also pledged to L-2)" in release.message
    assert "rel-1 is unknown to the bank" in release.message
    assert release.subject == f"unload:{gone}"
    assert only(run(f, two, [token(loan_id="L-2")]), Rule.UNAUTHORIZED_RELEASE) == []


# COVERAGE ----------------------------------------------------------------------------------


def test_a_price_fall_warns_and_a_rise_clears_it() -> None:
    f = stocked(40)
    fall = Price("steel", APRIL + dt.timedelta(days=1), Decimal("3000.00"))
    at = T0 + DAY
    (c,) = run(f, book(prices=[Price("steel", APRIL, STEEL), fall]), at_ms=at)
    assert (c.rule, c.severity, c.subject, c.observed_ms) == (
        Rule.COVERAGE_WARNING,
        Severity.WARNING,
        "loan:L-1",
        at,
    )
    assert c.message == (
        "loan L-1 coverage 1.2000 = collateral 120000.00 CNY / outstanding 100000.00 CNY on "
        "2024-04-02, below warning line 1.3"
    )
    assert len(c.evidence) == 1  # the stocktake that set the valued stock
    rise = Price("steel", APRIL + dt.timedelta(days=2), Decimal("3500.00"))
    assert run(f, book(prices=[Price("steel", APRIL, STEEL), fall, rise]), at_ms=at + DAY) == []
    assert run(f, book(prices=[Price("steel", APRIL, STEEL), fall]), at_ms=at - 1) == []


def test_below_the_liquidation_line_is_a_breach_only() -> None:
    f = stocked(40)
    cheap = book(prices=[Price("steel", APRIL, Decimal("2749.99"))])  # 1.0999…
    (c,) = run(f, cheap)
    assert (c.rule, c.severity) == (Rule.COVERAGE_BREACH, Severity.CRITICAL)
    assert "coverage 1.1000 = collateral 109999.60 CNY" in c.message
    assert "below liquidation line 1.1" in c.message
    assert run(f, book(prices=[Price("steel", APRIL, Decimal("2750.00"))]))[0].rule is (
        Rule.COVERAGE_WARNING
    )


def test_static_value_caps_each_lot_at_its_pledge_and_ignores_negative_stock() -> None:
    f = stocked(100)  # 60 more than pledged: worth nothing to this loan
    assert run(f, book(prices=[Price("steel", APRIL, Decimal("3000.00"))]))[0].rule is (
        Rule.COVERAGE_WARNING
    )


def test_dynamic_pledge_values_eligible_skus_and_breaches_under_its_floor() -> None:
    dynamic = loan(
        "L-9",
        pledge_type=PledgeType.DYNAMIC,
        min_value=Decimal("150000.00"),
        outstanding=Decimal("50000.00"),
    )
    eligible = book(
        loans=[dynamic],
        pledges=[Pledge("L-9", None, "steel", 0)],
        prices=[Price("steel", APRIL, STEEL), Price("soy", APRIL, Decimal("10.00"))],
    )
    f = Feed()
    f.count(T0, 20, lot="wr-1")
    f.count(T0, 20, lot="wr-2", bay="a2")
    f.count(T0, 999, lot="wr-3", sku="soy")  # not eligible
    assert run(f, eligible) == []  # 160 000 >= floor, coverage 3.2
    f.unload(T0 + H, 5, lot="wr-2", bay="a2")  # no token needed: watched by value
    (c,) = run(f, eligible)
    assert (c.rule, c.severity, c.loan_id) == (Rule.COVERAGE_BREACH, Severity.CRITICAL, "L-9")
    assert c.message == (
        "loan L-9 coverage 2.8000 = collateral 140000.00 CNY / outstanding 50000.00 CNY on "
        "2024-04-01, below liquidation line 1.1 / minimum value 150000.00 CNY"
    )
    assert len(c.evidence) == 3  # the two stocktakes of steel and the unload


def test_loans_with_nothing_outstanding_and_unpriced_skus() -> None:
    f = stocked(40)
    assert run(f, book(loans=[loan(outstanding=Decimal("0.00"))])) == []
    (c,) = run(f, book(prices=[Price("soy", APRIL, Decimal(1))]))
    assert c.rule is Rule.COVERAGE_BREACH
    assert "collateral 0.00 CNY" in c.message and "no price for steel (valued at 0)" in c.message


# WEIGHT_MISMATCH ---------------------------------------------------------------------------


def weighed(grams: Sequence[int], start_h: int = 1) -> Feed:
    """40 coils (1 000 000 g) in a1, then one weighing per hour."""
    f = stocked(40)
    for i, g in enumerate(grams):
        f.weight(T0 + (start_h + i) * H, g)
    return f


def test_weight_mismatch_needs_to_last_longer_than_the_setting() -> None:
    settings = dataclasses.replace(QUIET, weight_mismatch_for_ms=2 * H)
    f = weighed([1_000_000, 950_000, 950_000, 950_000])  # disagrees from 2 h, latest 4 h
    assert run(f, settings=settings, at_ms=T0 + 4 * H) == []  # exactly 2 h: not longer
    last = f.weight(T0 + 5 * H, 950_000)
    (c,) = run(f, settings=settings)
    first = f.events[2][0]
    assert (c.rule, c.severity, c.subject, c.device, c.observed_ms) == (
        Rule.WEIGHT_MISMATCH,
        Severity.MAJOR,
        "bay:a1",
        "cell-a1",
        T0 + 2 * H,
    )
    assert c.evidence == (first, last, f.events[0][0])  # first, latest, the stocktake
    assert c.rule.category is Category.TAMPER
    assert c.message == (
        "bay a1: load cells read 950000 g, book stock weighs 1000000 g (-50000 g), disagreeing "
        "for 3.0 h with no movement recorded to explain it"
    )


@pytest.mark.parametrize(
    ("grams", "severity"),
    [(899_999, Severity.CRITICAL), (900_000, Severity.MAJOR), (1_100_000, Severity.WARNING)],
)
def test_weight_mismatch_severity(grams: int, severity: Severity) -> None:
    (c,) = run(weighed([grams] * 4))
    assert c.severity is severity


def test_weight_mismatch_clears_when_the_book_catches_up() -> None:
    f = weighed([1_000_000, 975_000, 975_000, 975_000, 975_000])
    assert [c.rule for c in run(f)] == [Rule.WEIGHT_MISMATCH]
    f.count(T0 + 5 * H + 1, 39)  # the stocktake finds the coil missing: now a shortfall
    f.weight(T0 + 6 * H, 975_000)
    assert [c.rule for c in run(f)] == [Rule.SHORTFALL]


def test_bays_with_an_unknown_sku_are_not_compared() -> None:
    f = weighed([1] * 5)
    f.load(T0 + 1, 1, lot="x-1", sku="mystery")
    assert run(f) == []


# DEVICE_SILENT -----------------------------------------------------------------------------


def test_a_device_silent_too_long_warns_then_escalates_and_clears_on_a_heartbeat() -> None:
    f = Feed()
    beats(f, T0 + 5 * H, ("portal-in",))
    last = f.beat(T0, "cell-a1")
    assert run(f, EMPTY, at_ms=T0 + 2 * H, settings=LOUD) == []  # exactly silent_after: not longer
    (c,) = run(f, EMPTY, at_ms=T0 + 2 * H + 1, settings=LOUD)
    assert (c.rule, c.severity, c.subject, c.device, c.evidence, c.observed_ms) == (
        Rule.DEVICE_SILENT,
        Severity.WARNING,
        "device:gw-1/cell-a1",
        "cell-a1",
        (last,),
        T0,
    )
    assert c.rule.category is Category.INFRASTRUCTURE
    f.events.extend(beats(Feed(), T0 + 30 * H, ("portal-in",)).events[6:])
    assert run(f, EMPTY, at_ms=T0 + 25 * H, settings=LOUD)[0].severity is Severity.MAJOR
    f.beat(T0 + 25 * H, "cell-a1")
    assert run(f, EMPTY, at_ms=T0 + 25 * H, settings=LOUD) == []


def test_a_whole_silent_gateway_is_one_condition() -> None:
    f = beats(Feed(), T0 + H, ("portal-in", "portal-out", "cell-a1"))
    (c,) = run(f, EMPTY, at_ms=T0 + 4 * H, settings=LOUD)
    assert (c.subject, c.severity, c.device, c.observed_ms) == (
        "gateway:gw-1",
        Severity.MAJOR,
        None,
        T0 + H,
    )
    assert "none of its 3 devices has sent a heartbeat for 3.0 h" in c.message
    assert run(f, EMPTY, at_ms=T0 + 26 * H, settings=LOUD)[0].severity is Severity.CRITICAL


def test_a_device_that_never_beat_is_silent_from_its_first_event() -> None:
    f = beats(Feed(), T0 + 5 * H, ("portal-out",))
    f.count(T0 + H, 40)
    (c,) = run(f, EMPTY, at_ms=T0 + 3 * H + 1, settings=LOUD)
    assert c.subject == "device:gw-1/portal-in" and "last heartbeat never" in c.message


# CHAIN_GAP / TAMPER ------------------------------------------------------------------------


def record(kind: ChainRecord, rid: int = 1, **changes: object) -> ChainRecordRow:
    row = (
        rid,
        kind.value,
        "wh-1",
        "gw-1",
        "cell-a1",
        7,
        9,
        "a" * 64 + "," + "b" * 64,
        "detail",
        T0,
        None,
    )
    base = ChainRecordRow.from_row(row)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_open_chain_records_become_chain_gap_and_tamper() -> None:
    f = beats(Feed(), T0 + 2 * H, ("portal-in",))
    gap = record(ChainRecord.GAP, event_ids=())
    fork = record(ChainRecord.FORK, 2, seq_from=3, seq_to=3)
    found = run(f, EMPTY, records=[gap, fork])
    assert [(c.rule, c.severity, c.subject, c.evidence, c.device) for c in found] == [
        (Rule.CHAIN_GAP, Severity.MAJOR, "chain:GAP:gw-1/cell-a1:7-9", (), "cell-a1"),
        (
            Rule.TAMPER,
            Severity.CRITICAL,
            "chain:FORK:gw-1/cell-a1:3-3",
            ("a" * 64, "b" * 64),
            "cell-a1",
        ),
    ]
    assert found[0].message == "GAP in the event chain of gw-1/cell-a1 at seq 7..9: detail"
    resolved = dataclasses.replace(gap, resolved_ms=T0 + H)
    assert run(f, EMPTY, records=[resolved]) == []
    assert len(run(f, EMPTY, records=[resolved], at_ms=T0 + H - 1)) == 1  # as of before it resolved
    assert run(f, EMPTY, records=[dataclasses.replace(fork, created_ms=T0 + 3 * H)]) == []


def test_the_same_record_twice_is_one_condition_with_both_evidence() -> None:
    f = beats(Feed(), T0, ("portal-in",))
    one = record(ChainRecord.TAMPER, 1, event_ids=("c" * 64,))
    two = record(ChainRecord.TAMPER, 2, event_ids=("d" * 64,))
    (c,) = run(f, EMPTY, records=[one, two])
    assert c.evidence == ("c" * 64, "d" * 64)


def test_chain_record_rows_are_checked() -> None:
    with pytest.raises(AnchorError, match="got 3 columns, want 11"):
        ChainRecordRow.from_row((1, "GAP", "wh-1"))
    with pytest.raises(ValueError, match="BOGUS"):
        ChainRecordRow.from_row((1, "BOGUS", "wh-1", "gw-1", "d", 1, 1, "", "", T0, None))


def test_tamper_events_are_reported_for_a_week_per_device() -> None:
    f = beats(Feed(), T0 + 2 * H, ("portal-in", "door-1"))
    a = f.add(Kind.TAMPER, "door-1", T0 + H, reason="housing opened")
    b = f.add(Kind.TAMPER, "door-1", T0 + 2 * H, reason="housing opened")
    (c,) = run(f, EMPTY)
    assert (c.rule, c.severity, c.subject, c.evidence, c.observed_ms) == (
        Rule.TAMPER,
        Severity.MAJOR,
        "tamper-signal:gw-1/door-1",
        (a, b),
        T0 + 2 * H,
    )
    assert c.message == "device door-1 of gateway gw-1 reported tampering 2 time(s): housing opened"
    week = RuleSettings().tamper_signal_for_ms
    assert run(f, EMPTY, at_ms=T0 + H + week)[0].evidence == (a, b)
    assert run(f, EMPTY, at_ms=T0 + 2 * H + week + 1) == []


def test_bad_signature_counts_are_a_tamper_condition_per_warehouse() -> None:
    f = beats(Feed(), T0, ("portal-in",))
    (c,) = run(f, EMPTY, bad={"wh-1": 2, "wh-2": 0})
    assert (c.rule, c.warehouse, c.subject, c.severity) == (
        Rule.TAMPER,
        "wh-1",
        "quarantine:bad_signature",
        Severity.MAJOR,
    )
    assert c.message.startswith("2 message(s) for warehouse wh-1 quarantined")


# DOUBLE_PLEDGE -----------------------------------------------------------------------------


def test_a_lot_in_two_loans_at_the_same_time_is_a_double_pledge_until_the_overlap_ends() -> None:
    f = stocked(80)
    june = dt.date(2024, 6, 1)
    two = book(
        loans=[loan("L-1"), loan("L-2", start=june, end=dt.date(2024, 12, 31))],
        pledges=[Pledge("L-1", "wr-1", "steel", 40), Pledge("L-2", "wr-1", "steel", 40)],
    )
    (c,) = run(f, two)  # in April: L-2 has not started, but the overlap is coming
    assert (c.rule, c.severity, c.subject, c.loan_id, c.lot, c.evidence) == (
        Rule.DOUBLE_PLEDGE,
        Severity.CRITICAL,
        "lot:wr-1",
        None,
        "wr-1",
        (),
    )
    assert c.message == (
        "lot wr-1 is pledged to 2 loans at the same time: L-1 (2024-04-01..2024-06-30), "
        "L-2 (2024-06-01..2024-12-31)"
    )
    july = (dt.date(2024, 7, 1) - dt.date(1970, 1, 1)).days * DAY
    assert only(run(f, two, at_ms=july), Rule.DOUBLE_PLEDGE) == []
    apart = book(
        loans=[loan("L-1"), loan("L-2", start=dt.date(2024, 7, 1), end=dt.date(2024, 12, 31))],
        pledges=[Pledge("L-1", "wr-1", "steel", 40), Pledge("L-2", "wr-1", "steel", 40)],
    )
    assert run(f, apart) == []
    elsewhere = book(
        loans=[loan("L-1"), loan("L-2", warehouse="wh-2")],
        pledges=[Pledge("L-1", "wr-1", "steel", 40), Pledge("L-2", "wr-1", "steel", 40)],
    )
    assert only(run(f, elsewhere), Rule.DOUBLE_PLEDGE) == []


# settings and output -----------------------------------------------------------------------


def test_rule_settings_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        RuleSettings(
            silent_after_ms=-1,
            weight_critical_pct=Decimal(101),
            shortfall_major_pct=Decimal("NaN"),
            max_evidence=True,
        )
    assert len(caught.value.problems) == 4
    with pytest.raises(ConfigError, match="want <= shortfall_critical_pct"):
        RuleSettings(shortfall_major_pct=Decimal(20))


def test_output_is_sorted_by_rule_and_evidence_is_capped() -> None:
    f = stocked(30)
    for i in range(10):
        f.load(T0 + i + 1, 1)
        f.unload(T0 + i + 100, 1)
    found = run(f, settings=dataclasses.replace(QUIET, max_evidence=3))
    want = [Rule.SHORTFALL] + [Rule.UNAUTHORIZED_RELEASE] * 10 + [Rule.COVERAGE_WARNING]
    assert [c.rule for c in found] == want
    assert len(found[0].evidence) == 3 and found[0].evidence[-1] == f.events[-1][0]
    assert day_of(T0) == APRIL and day_of(-1) == dt.date(1969, 12, 31)
