"""What the reconciler finds: conditions with a stable rule name, severity and evidence.

A condition is a *state* ("lot WR-1 of loan L-7 is short by 6 units"), identified by a
``fingerprint`` that stays the same while the condition lasts: the alert lifecycle opens one
alert per fingerprint, escalates it when the severity rises, and resolves it when the
fingerprint is no longer reported. Categories keep tamper signals, infrastructure noise and
business alerts apart.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass


class Category(enum.Enum):
    BUSINESS = "business"  # collateral: shortfall, coverage, releases, double pledge
    TAMPER = "tamper"  # evidence integrity: chain breaks, tamper signals, physical mismatch
    INFRASTRUCTURE = "infrastructure"  # devices not reporting


class Rule(enum.Enum):
    SHORTFALL = "SHORTFALL"
    UNAUTHORIZED_RELEASE = "UNAUTHORIZED_RELEASE"
    COVERAGE_WARNING = "COVERAGE_WARNING"
    COVERAGE_BREACH = "COVERAGE_BREACH"
    WEIGHT_MISMATCH = "WEIGHT_MISMATCH"
    DEVICE_SILENT = "DEVICE_SILENT"
    CHAIN_GAP = "CHAIN_GAP"
    TAMPER = "TAMPER"
    DOUBLE_PLEDGE = "DOUBLE_PLEDGE"

    @property
    def category(self) -> Category:
        return _CATEGORY[self]


_CATEGORY = {
    Rule.SHORTFALL: Category.BUSINESS,
    Rule.UNAUTHORIZED_RELEASE: Category.BUSINESS,
    Rule.COVERAGE_WARNING: Category.BUSINESS,
    Rule.COVERAGE_BREACH: Category.BUSINESS,
    Rule.DOUBLE_PLEDGE: Category.BUSINESS,
    Rule.WEIGHT_MISMATCH: Category.TAMPER,
    Rule.CHAIN_GAP: Category.TAMPER,
    Rule.TAMPER: Category.TAMPER,
    Rule.DEVICE_SILENT: Category.INFRASTRUCTURE,
}


class Severity(enum.IntEnum):
    """Ordered: a change to a higher value is an escalation."""

    WARNING = 1
    MAJOR = 2
    CRITICAL = 3


@dataclass(frozen=True, slots=True)
class Condition:
    rule: Rule
    severity: Severity
    warehouse: str
    subject: str  # what it is about, stable while the condition lasts: lot, loan, device, …
    message: str  # one human sentence with the numbers
    evidence: tuple[str, ...]  # event ids that prove it (signed, in the Merkle log)
    observed_ms: int  # time of the event (or evaluation) that established it
    loan_id: str | None = None
    lot: str | None = None
    device: str | None = None

    @property
    def fingerprint(self) -> str:
        """Stable id of the open condition: rule, warehouse, loan and subject (not severity)."""
        key = "\x1f".join((self.rule.value, self.warehouse, self.loan_id or "", self.subject))
        return hashlib.sha256(key.encode()).hexdigest()[:32]
