"""The reconciler against the simulator: a clean quarter raises nothing; each reading-level
fault of the faults scenario raises exactly its condition, at the right time, and nothing else.

Events are made from ``devices.sim.model.simulate`` readings the way a gateway makes them
(per-device ``seq`` from 1 and ``prev`` = the previous event id). The loan book is built here
from the scenario's ``pledged`` lots; the bank's release tokens from the release references
the simulator puts on departures of pledged lots. The helpers are shared with the other
``test_reconcile_*`` files.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

from anchor.loanbook import Loan, LoanBook, Pledge, PledgeType, Price
from anchor.reconcile.batch import events_frame, snapshot_from_frame
from anchor.reconcile.conditions import Condition, Rule, Severity
from anchor.reconcile.rules import RuleSettings, evaluate
from anchor.reconcile.settings import DAY_MS, HOUR_MS, day_of
from anchor.reconcile.state import IncrementalState, StateConfig
from devices.sim import Scenario, WireStream, find_scenario, load_scenario, simulate
from devices.sim.faults import Dropout, GatewayOffline, SlowDrain, TamperAlarm, Theft
from pledgewatch.errors import SignatureError
from pledgewatch.events import ZERO_HASH, Event, Kind, SignedEvent
from pledgewatch.release import ReleaseToken
from pledgewatch.signing import verify_event

PRICES = {
    "steel-coil-2mm": Decimal("4200.00"),
    "copper-cathode": Decimal("68000.00"),
    "soybeans-bag-50kg": Decimal("230.00"),
}
STATIC = "L-static"
DYNAMIC = "L-dynamic"


@dataclass(frozen=True, slots=True)
class SimEvent:
    event_id: str
    event: Event
    faults: tuple[int, ...]  # indexes of the scenario faults that made or changed it


@cache
def shipped(name: str) -> Scenario:
    return load_scenario(find_scenario(name))


@cache
def sim_events(scenario: Scenario) -> tuple[SimEvent, ...]:
    """Every reading of the scenario as the event its gateway would sign, in reading order."""
    chains: dict[tuple[str, str], tuple[int, str]] = {}
    out = []
    for sr in simulate(scenario):
        link = (sr.gateway, sr.reading.device)
        seq, prev = chains.get(link, (0, ZERO_HASH))
        event = sr.reading.to_event(scenario.warehouse, sr.gateway, seq + 1, prev)
        event_id = event.event_id()
        chains[link] = (seq + 1, event_id)
        out.append(SimEvent(event_id, event, sr.faults))
    return tuple(out)


def pairs(events: Iterable[SimEvent]) -> list[tuple[str, Event]]:
    return [(e.event_id, e.event) for e in events]


def state_config(scenario: Scenario, **changes: object) -> StateConfig:
    units = {sku.id: sku.unit_grams for sku in scenario.skus}
    return StateConfig(unit_grams=units, **changes)  # type: ignore[arg-type]


def scenario_book(
    scenario: Scenario, outstanding: Decimal, *, dynamic: tuple[str, Decimal] | None = None
) -> LoanBook:
    """One static loan pledging the scenario's pledged lots (opening qty), optionally a dynamic
    loan over one SKU (``(sku, min_value)``, outstanding ``min_value`` × 2/3); prices move."""
    start, end = day_of(scenario.start_ms), day_of(scenario.end_ms) + dt.timedelta(days=30)
    loans = [_loan(STATIC, scenario.warehouse, outstanding, start, end, PledgeType.STATIC)]
    pledges = [Pledge(STATIC, lot.id, lot.sku, lot.qty) for lot in scenario.lots if lot.pledged]
    if dynamic is not None:
        sku, floor = dynamic
        loans.append(
            _loan(DYNAMIC, scenario.warehouse, floor * 2 / 3, start, end, PledgeType.DYNAMIC, floor)
        )
        pledges.append(Pledge(DYNAMIC, None, sku, 0))
    prices = [Price(sku, start, p) for sku, p in PRICES.items()]
    prices += [
        Price(sku, start + dt.timedelta(days=1), p * Decimal("0.97")) for sku, p in PRICES.items()
    ]
    return LoanBook(tuple(loans), tuple(pledges), tuple(prices))


def _loan(
    loan_id: str,
    warehouse: str,
    outstanding: Decimal,
    start: dt.date,
    end: dt.date,
    kind: PledgeType,
    min_value: Decimal = Decimal(0),
) -> Loan:
    return Loan(
        loan_id=loan_id,
        borrower="Jinhai Steel Trading Co.",
        warehouse=warehouse,
        currency="CNY",
        outstanding=outstanding.quantize(Decimal("0.01")),
        start=start,
        end=end,
        pledge_type=kind,
        advance_rate=Decimal("0.7"),
        warning_ratio=Decimal("1.3"),
        liquidation_ratio=Decimal("1.1"),
        min_value=min_value,
    )


def scenario_tokens(events: Iterable[SimEvent], loan_id: str = STATIC) -> list[ReleaseToken]:
    """The token the bank issued for every release reference on an UNLOAD, for its qty."""
    return [
        ReleaseToken(
            id=e.event.release,
            warehouse=e.event.warehouse,
            loan_id=loan_id,
            lot=e.event.lot or "",
            qty=e.event.qty or 0,
            issued_ms=e.event.ts_ms - HOUR_MS,
            expires_ms=e.event.ts_ms + DAY_MS,
        )
        for e in events
        if e.event.kind is Kind.UNLOAD and e.event.release is not None
    ]


def key_of(c: Condition) -> tuple[str, str | None, str]:
    return (c.rule.value, c.loan_id, c.subject)


def sweep(
    scenario: Scenario,
    book: LoanBook,
    step_ms: int,
    settings: RuleSettings | None = None,
    config: StateConfig | None = None,
) -> tuple[IncrementalState, dict[tuple[str, str | None, str], list[tuple[int, Condition]]]]:
    """Apply the events in order, evaluating every ``step_ms`` and at the end; per condition
    key, every (evaluation time, condition) at which it was reported."""
    events = sim_events(scenario)
    tokens = scenario_tokens(events)
    state = IncrementalState(config or state_config(scenario))
    seen: dict[tuple[str, str | None, str], list[tuple[int, Condition]]] = {}

    def check(at_ms: int) -> None:
        for c in evaluate(state.snapshot(), book, tokens, [], settings or RuleSettings(), at_ms):
            seen.setdefault(key_of(c), []).append((at_ms, c))

    at = scenario.start_ms + step_ms
    for e in events:
        while e.event.ts_ms > at:
            check(at)
            at += step_ms
        state.apply(e.event, e.event_id)
    check(scenario.end_ms)
    return state, seen


def fault(scenario: Scenario, kind: type) -> object:
    return next(f for f in scenario.faults if isinstance(f, kind))


def test_clean_quarter_raises_no_condition_at_all() -> None:
    scenario = shipped("clean-90d")
    book = scenario_book(
        scenario, Decimal("15000000"), dynamic=("steel-coil-2mm", Decimal("3000000"))
    )
    started = time.perf_counter()
    state, seen = sweep(scenario, book, 6 * HOUR_MS)
    swept = time.perf_counter() - started
    assert seen == {}
    events = sim_events(scenario)
    started = time.perf_counter()
    batch = snapshot_from_frame(events_frame(pairs(events)), scenario.end_ms, state.config)
    batched = time.perf_counter() - started
    assert batch == state.snapshot()
    tokens = scenario_tokens(events)
    assert evaluate(batch, book, tokens, [], RuleSettings(), scenario.end_ms) == []
    print(
        f"clean-90d: {len(events)} events; incremental + 361 evaluations {swept:.2f} s, "
        f"batch snapshot {batched:.2f} s"
    )


def test_faults_raise_exactly_their_conditions_at_the_right_times() -> None:
    scenario = shipped("faults")
    book = scenario_book(scenario, Decimal("150000"))
    settings = RuleSettings()
    _, seen = sweep(scenario, book, 15 * 60_000, settings)
    events = sim_events(scenario)
    theft = fault(scenario, Theft)
    drain = fault(scenario, SlowDrain)
    dropout = fault(scenario, Dropout)
    alarm = fault(scenario, TamperAlarm)
    assert isinstance(theft, Theft) and isinstance(drain, SlowDrain)
    assert isinstance(dropout, Dropout) and isinstance(alarm, TamperAlarm)
    stolen = next(e for e in events if theft.index in e.faults)
    alarmed = next(e for e in events if alarm.index in e.faults)
    assert set(seen) == {
        ("UNAUTHORIZED_RELEASE", STATIC, f"unload:{stolen.event_id}"),
        ("SHORTFALL", STATIC, f"lot:{theft.lot}"),
        ("WEIGHT_MISMATCH", None, f"bay:{drain.bay}"),
        ("DEVICE_SILENT", None, f"device:gw-b/{dropout.device}"),
        ("TAMPER", None, "tamper-signal:gw-a/door-a"),
    }
    release = seen[("UNAUTHORIZED_RELEASE", STATIC, f"unload:{stolen.event_id}")]
    assert release[0][0] >= stolen.event.ts_ms > release[0][0] - 15 * 60_000
    assert release[-1][0] == scenario.end_ms  # stays until the bank ratifies it
    assert release[0][1].severity is Severity.CRITICAL
    assert release[0][1].evidence == (stolen.event_id,)
    assert "no release token" in release[0][1].message

    short = seen[("SHORTFALL", STATIC, f"lot:{theft.lot}")]
    assert short[0][0] == release[0][0]  # the same evaluation
    assert f"short {theft.qty} " in short[0][1].message
    assert stolen.event_id in short[0][1].evidence
    assert short[-1][0] == scenario.end_ms  # the next stocktakes counted the theft too

    drained = seen[("WEIGHT_MISMATCH", None, f"bay:{drain.bay}")]
    first = drained[0][1]
    assert drain.start_ms < first.observed_ms < drain.end_ms
    assert drained[0][0] > first.observed_ms + settings.weight_mismatch_for_ms
    assert drained[0][0] <= first.observed_ms + settings.weight_mismatch_for_ms + HOUR_MS
    assert drained[-1][0] == scenario.end_ms  # the goods stay gone
    assert first.severity is Severity.MAJOR and first.device == f"cell-{drain.bay}"

    silent = [at for at, _ in seen[("DEVICE_SILENT", None, f"device:gw-b/{dropout.device}")]]
    assert dropout.start_ms < silent[0] and silent[-1] < dropout.end_ms
    assert silent[0] - dropout.start_ms <= settings.silent_after_ms

    tampered = seen[("TAMPER", None, "tamper-signal:gw-a/door-a")]
    assert tampered[0][0] - 15 * 60_000 < alarmed.event.ts_ms <= tampered[0][0]
    assert tampered[0][1].evidence == (alarmed.event_id,)
    assert tampered[-1][0] == scenario.end_ms  # within tamper_signal_for_ms


def test_faults_batch_and_incremental_agree_at_every_hour() -> None:
    scenario = shipped("faults")
    events = sim_events(scenario)
    frame = events_frame(pairs(events))
    config = state_config(scenario, weight_window_ms=4 * HOUR_MS)
    state = IncrementalState(config)
    book = scenario_book(scenario, Decimal("150000"))
    tokens = scenario_tokens(events)
    at = scenario.start_ms
    for e in events:
        while e.event.ts_ms > at:
            snap = state.snapshot()
            batch = snapshot_from_frame(frame, at, config)
            assert batch == snap
            assert evaluate(snap, book, tokens, [], RuleSettings(), at) == evaluate(
                batch, book, tokens, [], RuleSettings(), at
            )
            at += 2 * HOUR_MS
        state.apply(e.event, e.event_id)


def test_faults_delivered_late_reordered_and_twice_as_the_anchor_would_store_them() -> None:
    """Arrival order from ``WireStream``: a gateway offline for 2 h, a reordered message,
    duplicates and a replay (stored once), a forged key and an altered payload (refused; the
    altered one counts as a bad signature). Same conditions as in reading order, plus the
    bad-signature TAMPER; while gw-b is offline its silence is one gateway condition."""
    scenario = shipped("faults")
    stream = WireStream(scenario)
    keys = {stream.keys[g].key_id: pk for g, pk in stream.public_keys().items()}
    state = IncrementalState(state_config(scenario))
    stored: dict[str, Event] = {}
    bad = 0
    arrivals: list[tuple[int, str]] = []
    offline = next(f for f in scenario.faults if isinstance(f, GatewayOffline))
    during: list[Condition] = []
    quick = RuleSettings(silent_after_ms=HOUR_MS)
    events = sim_events(scenario)
    book = scenario_book(scenario, Decimal("150000"))
    tokens = scenario_tokens(events)
    for message in stream:
        at = offline.end_ms - 1
        if message.at_ms > at and not during:
            during = evaluate(state.snapshot(), book, tokens, [], quick, at)
        signed = SignedEvent.from_wire(message.payload)
        if signed.key_id not in keys:
            continue  # unknown_key: quarantined, not a signature failure
        try:
            verify_event(signed, keys[signed.key_id])
        except SignatureError:
            bad += 1
            continue
        if signed.event_id in stored:
            continue  # duplicate
        stored[signed.event_id] = signed.event
        arrivals.append((signed.event.ts_ms, signed.event_id))
        state.apply(signed.event, signed.event_id)
    assert bad == 1
    assert arrivals != sorted(arrivals)  # some did arrive late
    snap = state.snapshot()
    frame = events_frame(stored.items())
    assert snapshot_from_frame(frame, None, state.config) == snap
    found = evaluate(
        snap,
        book,
        tokens,
        [],
        RuleSettings(),
        scenario.end_ms,
        bad_signatures={scenario.warehouse: bad},
    )
    _, in_order = sweep(scenario, book, scenario.end_ms - scenario.start_ms)
    at_end = {key for key, seen in in_order.items() if seen[-1][0] == scenario.end_ms}
    assert {key_of(c) for c in found} == at_end | {("TAMPER", None, "quarantine:bad_signature")}
    silent = [c.subject for c in during if c.rule is Rule.DEVICE_SILENT]
    assert silent == [f"gateway:{offline.gateway}"]


def conditions_at(
    events: Sequence[SimEvent], book: LoanBook, at_ms: int, scenario: Scenario
) -> list[Condition]:
    state = IncrementalState(state_config(scenario))
    for e in events:
        if e.event.ts_ms <= at_ms:
            state.apply(e.event, e.event_id)
    return evaluate(state.snapshot(), book, scenario_tokens(events), [], RuleSettings(), at_ms)


def test_a_coverage_drop_in_the_faults_scenario_needs_a_price_fall() -> None:
    scenario = shipped("faults")
    events = sim_events(scenario)
    book = scenario_book(scenario, Decimal("150000"))
    rules = {c.rule for c in conditions_at(events, book, scenario.end_ms, scenario)}
    assert Rule.COVERAGE_WARNING not in rules and Rule.COVERAGE_BREACH not in rules
    crash = LoanBook(
        book.loans,
        book.pledges,
        (*book.prices, Price("steel-coil-2mm", day_of(scenario.end_ms), Decimal("3000.00"))),
    )
    found = [
        c
        for c in conditions_at(events, crash, scenario.end_ms, scenario)
        if c.rule in (Rule.COVERAGE_WARNING, Rule.COVERAGE_BREACH)
    ]
    assert [(c.rule, c.loan_id) for c in found] == [(Rule.COVERAGE_WARNING, STATIC)], found
