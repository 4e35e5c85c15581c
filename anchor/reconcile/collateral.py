"""Collateral rules over a snapshot and the loan book: releases, shortfall, coverage, double
pledge. Pure functions; semantics and severities are documented in ``anchor.reconcile.rules``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from anchor.loanbook import Loan, LoanBook, PledgeType
from anchor.reconcile.conditions import Condition, Rule, Severity
from anchor.reconcile.settings import RuleSettings, day_of, newest
from anchor.reconcile.snapshot import Snapshot, StockLine, Unload
from pledgewatch.release import ReleaseToken

HUNDRED = Decimal(100)


class StockIndex:
    """Book stock lines of a snapshot by (warehouse, lot, sku), (warehouse, sku) and bay."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.by_lot: dict[tuple[str, str, str], list[StockLine]] = defaultdict(list)
        self.by_sku: dict[tuple[str, str], list[StockLine]] = defaultdict(list)
        self.by_bay: dict[tuple[str, str], list[StockLine]] = defaultdict(list)
        for line in snapshot.stock:
            self.by_lot[(line.warehouse, line.lot, line.sku)].append(line)
            self.by_sku[(line.warehouse, line.sku)].append(line)
            self.by_bay[(line.warehouse, line.bay)].append(line)

    def lot(self, warehouse: str, lot: str, sku: str) -> list[StockLine]:
        return self.by_lot.get((warehouse, lot, sku), [])


def evidence_of(lines: Iterable[StockLine], limit: int) -> tuple[str, ...]:
    """The stock-setting event ids of ``lines`` (COUNT, then movements), the newest ``limit``."""
    ids = tuple(dict.fromkeys(i for line in lines for i in line.evidence))
    return newest(ids, limit)


@dataclass(frozen=True, slots=True)
class LotPledge:
    """The static pledges of one lot to one loan, qty summed."""

    loan: Loan
    lot: str
    sku: str
    qty: int


def lot_pledges(book: LoanBook) -> list[LotPledge]:
    loans = {loan.loan_id: loan for loan in book.loans}
    qty: dict[tuple[str, str, str], int] = defaultdict(int)
    for p in book.pledges:
        if p.lot is not None and p.loan_id in loans:
            qty[(p.loan_id, p.lot, p.sku)] += p.qty
    return [LotPledge(loans[k[0]], k[1], k[2], n) for k, n in sorted(qty.items())]


def by_loan(pledges: Sequence[LotPledge]) -> dict[str, list[LotPledge]]:
    """``pledges`` grouped by loan id, so valuing every loan is linear in the pledges."""
    out: dict[str, list[LotPledge]] = defaultdict(list)
    for p in pledges:
        out[p.loan.loan_id].append(p)
    return out


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the release check concluded about one UNLOAD of a pledged lot."""

    unload: Unload
    loan: Loan  # the token's loan if it pledges the lot, else the first pledging loan
    others: tuple[str, ...]  # other loans in force pledging the lot that day
    problem: str | None  # None: authorised
    severity: Severity
    authorised_qty: int
    related: tuple[str, ...]  # earlier unloads that used up the same token


def judge_releases(
    snapshot: Snapshot, pledges: Sequence[LotPledge], tokens: Sequence[ReleaseToken]
) -> list[Verdict]:
    """Every UNLOAD of a lot pledged (in its warehouse) to a loan in force on its day."""
    pledging: dict[tuple[str, str], list[Loan]] = defaultdict(list)
    for p in pledges:
        if p.loan not in pledging[(p.loan.warehouse, p.lot)]:
            pledging[(p.loan.warehouse, p.lot)].append(p.loan)
    by_id: dict[str, ReleaseToken] = {}
    for t in tokens:
        by_id.setdefault(t.id, t)
    used: dict[str, int] = defaultdict(int)
    users: dict[str, list[str]] = defaultdict(list)
    out = []
    for u in snapshot.unloads:
        candidates = pledging.get((u.warehouse, u.lot))
        if not candidates:
            continue
        day = day_of(u.ts_ms)
        loans = [x for x in candidates if x.in_force(day)]
        if not loans:
            continue
        token = by_id.get(u.release) if u.release is not None else None
        named = next((x for x in loans if token is not None and x.loan_id == token.loan_id), None)
        loan = named or loans[0]
        others = tuple(x.loan_id for x in loans if x is not loan)
        problem, severity = _token_problem(u, token, named)
        authorised, related = 0, tuple[str, ...]()
        if problem is None and token is not None:
            left = max(token.qty - used[token.id], 0)
            related = tuple(users[token.id])
            used[token.id] += u.qty
            users[token.id].append(u.event_id)
            authorised = min(u.qty, left)
            if u.qty > left:
                problem = (
                    f"token {token.id} allows {token.qty}, {token.qty - left} used before, "
                    f"this unload takes {u.qty}"
                )
                severity = Severity.MAJOR
        out.append(Verdict(u, loan, others, problem, severity, authorised, related))
    return out


def _token_problem(
    u: Unload, token: ReleaseToken | None, named: Loan | None
) -> tuple[str | None, Severity]:
    if u.release is None:
        return "no release token", Severity.CRITICAL
    if token is None:
        return f"release token {u.release} is unknown to the bank", Severity.CRITICAL
    if token.warehouse != u.warehouse:
        return f"token {token.id} is for warehouse {token.warehouse}", Severity.CRITICAL
    if token.lot != u.lot:
        return f"token {token.id} is for lot {token.lot}", Severity.CRITICAL
    if named is None:
        return (
            f"token {token.id} names loan {token.loan_id}, which does not pledge lot {u.lot} "
            "that day",
            Severity.CRITICAL,
        )
    if u.ts_ms >= token.expires_ms:
        return f"token {token.id} expired at {_iso(token.expires_ms)}", Severity.MAJOR
    return None, Severity.WARNING


def release_conditions(verdicts: Sequence[Verdict]) -> list[Condition]:
    out = []
    for v in verdicts:
        if v.problem is None:
            continue
        u = v.unload
        also = f" (also pledged to {', '.join(v.others)})" if v.others else ""
        out.append(
            Condition(
                rule=Rule.UNAUTHORIZED_RELEASE,
                severity=v.severity,
                warehouse=u.warehouse,
                subject=f"unload:{u.event_id}",
                message=(
                    f"{u.qty} units of lot {u.lot} left bay {u.bay} at {_iso(u.ts_ms)} while "
                    f"pledged to loan {v.loan.loan_id}{also}: {v.problem}"
                ),
                evidence=(u.event_id, *v.related),
                observed_ms=u.ts_ms,
                loan_id=v.loan.loan_id,
                lot=u.lot,
            )
        )
    return out


def shortfall_conditions(
    pledges: Sequence[LotPledge],
    index: StockIndex,
    verdicts: Sequence[Verdict],
    settings: RuleSettings,
    at_ms: int,
) -> list[Condition]:
    released: dict[tuple[str, str], int] = defaultdict(int)
    for v in verdicts:
        released[(v.loan.loan_id, v.unload.lot)] += v.authorised_qty
    day = day_of(at_ms)
    out = []
    for p in pledges:
        if not p.loan.in_force(day):
            continue
        freed = released[(p.loan.loan_id, p.lot)]
        required = max(p.qty - freed, 0)
        lines = index.lot(p.loan.warehouse, p.lot, p.sku)
        stock = sum(line.qty for line in lines)
        if stock >= required or required == 0:  # nothing left to secure: no shortfall
            continue
        missing = required - stock
        share = HUNDRED * missing / required
        severity = (
            Severity.CRITICAL
            if share >= settings.shortfall_critical_pct
            else Severity.MAJOR
            if share >= settings.shortfall_major_pct
            else Severity.WARNING
        )
        out.append(
            Condition(
                rule=Rule.SHORTFALL,
                severity=severity,
                warehouse=p.loan.warehouse,
                subject=f"lot:{p.lot}",
                message=(
                    f"lot {p.lot} ({p.sku}) of loan {p.loan.loan_id}: book stock {stock}, "
                    f"pledge needs {required} ({p.qty} pledged - {freed} released with "
                    f"tokens): short {missing} ({share:.1f} %)"
                ),
                evidence=evidence_of(lines, settings.max_evidence),
                observed_ms=max((line.last_ms for line in lines), default=at_ms),
                loan_id=p.loan.loan_id,
                lot=p.lot,
            )
        )
    return out


def coverage_conditions(
    book: LoanBook,
    pledges: Sequence[LotPledge],
    index: StockIndex,
    settings: RuleSettings,
    at_ms: int,
) -> list[Condition]:
    day = day_of(at_ms)
    mine = by_loan(pledges)
    out = []
    for loan in book.loans:
        if not loan.in_force(day) or loan.outstanding <= 0:
            continue
        value, lines, unpriced = collateral_value(
            book, loan, mine.get(loan.loan_id, ()), index, day
        )
        condition = _coverage(loan, value, unpriced, at_ms)
        if condition is not None:
            evidence = evidence_of(lines, settings.max_evidence)
            out.append(dataclasses.replace(condition, evidence=evidence))
    return out


def collateral_value(
    book: LoanBook, loan: Loan, pledges: Sequence[LotPledge], index: StockIndex, day: dt.date
) -> tuple[Decimal, list[StockLine], list[str]]:
    """Value per ``anchor.loanbook``: static Σ min(stock, pledged) × price, dynamic Σ eligible
    SKU stock × price. Negative book stock counts as 0; an SKU with no price as 0 (listed)."""
    value, lines, unpriced = Decimal(0), [], []
    if loan.pledge_type is PledgeType.STATIC:
        holdings = []
        for p in pledges:  # callers over many loans pass only this loan's (``by_loan``)
            if p.loan.loan_id == loan.loan_id:
                found = index.lot(loan.warehouse, p.lot, p.sku)
                lines.extend(found)
                holdings.append((p.sku, min(max(sum(x.qty for x in found), 0), p.qty)))
    else:
        eligible = sorted({p.sku for p in book.pledges_of(loan.loan_id) if p.lot is None})
        holdings = []
        for sku in eligible:
            found = index.by_sku.get((loan.warehouse, sku), [])
            lines.extend(found)
            holdings.append((sku, sum(max(x.qty, 0) for x in found)))
    for sku, qty in holdings:
        price = book.price(sku, day)
        if price is None:
            if qty:
                unpriced.append(sku)
            continue
        value += price * qty
    return value, lines, sorted(set(unpriced))


def _coverage(loan: Loan, value: Decimal, unpriced: list[str], at_ms: int) -> Condition | None:
    ratio = value / loan.outstanding
    floor = loan.pledge_type is PledgeType.DYNAMIC and loan.min_value > 0 and value < loan.min_value
    if ratio < loan.liquidation_ratio or floor:
        rule, severity = Rule.COVERAGE_BREACH, Severity.CRITICAL
        line = f"liquidation line {loan.liquidation_ratio}"
        if floor:
            line += f" / minimum value {loan.min_value:.2f} {loan.currency}"
    elif ratio < loan.warning_ratio:
        rule, severity, line = (
            Rule.COVERAGE_WARNING,
            Severity.WARNING,
            f"warning line {loan.warning_ratio}",
        )
    else:
        return None
    note = f"; no price for {', '.join(unpriced)} (valued at 0)" if unpriced else ""
    return Condition(
        rule=rule,
        severity=severity,
        warehouse=loan.warehouse,
        subject=f"loan:{loan.loan_id}",
        message=(
            f"loan {loan.loan_id} coverage {ratio:.4f} = collateral {value:.2f} {loan.currency} / "
            f"outstanding {loan.outstanding:.2f} {loan.currency} on {day_of(at_ms)}, below {line}"
            f"{note}"
        ),
        evidence=(),
        observed_ms=at_ms,
        loan_id=loan.loan_id,
    )


def double_pledge_conditions(pledges: Sequence[LotPledge], at_ms: int) -> list[Condition]:
    """A lot (per warehouse) statically pledged to two loans whose periods overlap, reported
    while that overlap has not ended (so also before it starts)."""
    day = day_of(at_ms)
    by_lot: dict[tuple[str, str], dict[str, Loan]] = defaultdict(dict)
    for p in pledges:
        by_lot[(p.loan.warehouse, p.lot)][p.loan.loan_id] = p.loan
    out = []
    for (warehouse, lot), loans in sorted(by_lot.items()):
        ordered = sorted(loans.values(), key=lambda x: x.loan_id)
        clash: dict[str, Loan] = {}
        for i, a in enumerate(ordered):
            for b in ordered[i + 1 :]:
                if max(a.start, b.start) <= min(a.end, b.end) >= day:
                    clash[a.loan_id], clash[b.loan_id] = a, b
        if not clash:
            continue
        periods = ", ".join(f"{x.loan_id} ({x.start}..{x.end})" for x in clash.values())
        out.append(
            Condition(
                rule=Rule.DOUBLE_PLEDGE,
                severity=Severity.CRITICAL,
                warehouse=warehouse,
                subject=f"lot:{lot}",
                message=f"lot {lot} is pledged to {len(clash)} loans at the same time: {periods}",
                evidence=(),
                observed_ms=at_ms,
                lot=lot,
            )
        )
    return out


def _iso(ms: int) -> str:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
