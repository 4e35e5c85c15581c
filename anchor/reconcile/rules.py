"""The reconciliation rules: one evaluation of a ``Snapshot`` against the loan book.

``evaluate(snapshot, book, tokens, chain_records, settings, at_ms, bad_signatures=...)``
returns every condition that holds at ``at_ms`` (continuous and batch mode call the same
function; only the snapshot is built differently). Pure: no I/O, no clock. "The day" is the
UTC date of ``at_ms`` (of the event, where a rule says so); a loan is in force on
``start <= day <= end``. Output: one condition per fingerprint (the most severe, evidence
merged), sorted by rule, warehouse, loan, subject.

=====================  =========================================================================
rule (subject)         fires when … / severity
=====================  =========================================================================
UNAUTHORIZED_RELEASE   an UNLOAD of a lot pledged (in that warehouse, by any pledge naming the
(``unload:<event>``)   lot) to a loan in force on the unload's day, without a valid token: no
                       ``release`` ref, a token the bank did not issue, a token for another
                       warehouse / lot / a loan that does not pledge the lot that day → CRITICAL;
                       unloaded at or after ``expires_ms``, or the unloads citing the token in
                       event order exceed its qty (that unload and every later one) → MAJOR.
                       Judged per unload, even if the remaining stock still covers the pledge.
                       Reported for as long as the unload is in the snapshot: it resolves only
                       when the bank ratifies it with a token (``issued_ms`` is not checked,
                       as in ``pledgewatch.release``) or the book stops pledging the lot.
SHORTFALL              a static pledge (loan in force at ``at_ms``): book stock of the lot in
(``lot:<lot>``)        the loan's warehouse (Σ over bays, that SKU) < pledged qty − qty the bank
                       released from it with valid tokens. Share missing ≥
                       ``shortfall_critical_pct`` → CRITICAL, ≥ ``shortfall_major_pct`` → MAJOR,
                       else WARNING. Evidence: the stocktake COUNTs and movements since them
                       that set the stock; observed: the latest of them. Clears when a COUNT
                       (or LOAD) restores the stock, or a token covers the release.
COVERAGE_BREACH        coverage = collateral value ÷ outstanding (``anchor.loanbook``; prices
(``loan:<loan>``)      of the day of ``at_ms``; Decimal throughout; negative stock and unpriced
                       SKUs count 0, named in the message) below ``liquidation_ratio``, or a
                       dynamic pledge's value below ``min_value`` → CRITICAL.
COVERAGE_WARNING       else coverage below ``warning_ratio`` → WARNING (a margin call). Only the
(``loan:<loan>``)      worse of the two is reported; loans with outstanding 0 are skipped.
WEIGHT_MISMATCH        a bay's load cells disagree with book stock × unit grams (beyond the
(``bay:<bay>``)        state's tolerance) at every weighing for longer than
                       ``weight_mismatch_for_ms`` (first to latest disagreeing weighing) —
                       账物不符. Less than book: MAJOR, beyond ``weight_critical_pct`` of it:
                       CRITICAL; more than book: WARNING. Bays with an SKU of unknown unit
                       weight are skipped. Evidence: first and latest disagreeing WEIGHT, then
                       the bay's stock-setting events.
DEVICE_SILENT          no heartbeat for more than ``silent_after_ms`` (a device that never beat:
(``device:<gw>/<d>``,  since its first event). If every device of a gateway is silent, one
``gateway:<gw>``)      gateway condition (MAJOR, CRITICAL after ``silent_major_after_ms``)
                       instead of one per device (WARNING, MAJOR after it).
CHAIN_GAP              an open GAP chain record (created by ``at_ms``, not resolved by it) →
(``chain:GAP:…``)      MAJOR.
TAMPER                 an open FORK / TAMPER chain record → CRITICAL; TAMPER events of the last
(``chain:…``,          ``tamper_signal_for_ms`` → one MAJOR condition per device; a warehouse
``tamper-signal:…``,   with a bad-signature quarantine count > 0 (``bad_signatures``, counted
``quarantine:…``)      over whatever window the caller chooses) → MAJOR.
DOUBLE_PLEDGE          one lot (per warehouse) pledged to two loans whose periods overlap,
(``lot:<lot>``)        reported until the overlap has ended (also before it starts) → CRITICAL;
                       from the book alone, ``loan_id`` None.
=====================  =========================================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from anchor.loanbook import LoanBook
from anchor.reconcile.collateral import (
    StockIndex,
    coverage_conditions,
    double_pledge_conditions,
    judge_releases,
    lot_pledges,
    release_conditions,
    shortfall_conditions,
)
from anchor.reconcile.conditions import Condition, Rule
from anchor.reconcile.integrity import (
    ChainRecordRow,
    chain_conditions,
    silent_conditions,
    tamper_conditions,
    weight_conditions,
)
from anchor.reconcile.settings import RuleSettings, newest
from anchor.reconcile.snapshot import Snapshot
from pledgewatch.release import ReleaseToken

__all__ = ["ChainRecordRow", "RuleSettings", "evaluate"]

_NONE: Mapping[str, int] = MappingProxyType({})
_RULE_ORDER = {rule: i for i, rule in enumerate(Rule)}


def evaluate(
    snapshot: Snapshot,
    book: LoanBook,
    tokens: Sequence[ReleaseToken],
    chain_records: Sequence[ChainRecordRow],
    settings: RuleSettings,
    at_ms: int,
    *,
    bad_signatures: Mapping[str, int] = _NONE,
) -> list[Condition]:
    """Every condition at ``at_ms``. ``tokens`` are verified tokens (``parse_token``);
    ``bad_signatures`` maps warehouse → bad-signature quarantine count."""
    index = StockIndex(snapshot)
    pledges = lot_pledges(book)
    verdicts = judge_releases(snapshot, pledges, tokens)
    found = [
        *release_conditions(verdicts),
        *shortfall_conditions(pledges, index, verdicts, settings, at_ms),
        *coverage_conditions(book, pledges, index, settings, at_ms),
        *double_pledge_conditions(pledges, at_ms),
        *weight_conditions(snapshot, index, settings),
        *silent_conditions(snapshot, settings, at_ms),
        *chain_conditions(chain_records, at_ms),
        *tamper_conditions(snapshot, bad_signatures, settings, at_ms),
    ]
    return _merge(found, settings.max_evidence)


def _merge(conditions: list[Condition], max_evidence: int) -> list[Condition]:
    merged: dict[str, Condition] = {}
    for c in conditions:
        seen = merged.get(c.fingerprint)
        if seen is None:
            merged[c.fingerprint] = c
            continue
        top = c if c.severity > seen.severity else seen
        evidence = newest(tuple(dict.fromkeys((*seen.evidence, *c.evidence))), max_evidence)
        merged[c.fingerprint] = dataclasses.replace(top, evidence=evidence)
    return sorted(
        merged.values(),
        key=lambda c: (_RULE_ORDER[c.rule], c.warehouse, c.loan_id or "", c.subject),
    )
