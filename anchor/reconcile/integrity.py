"""Evidence-integrity and infrastructure rules: weight mismatch, silent devices, chain records,
tamper signals. Pure functions; semantics and severities are documented in
``anchor.reconcile.rules``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from anchor.chain import ChainRecord
from anchor.errors import AnchorError
from anchor.reconcile.collateral import StockIndex, evidence_of
from anchor.reconcile.conditions import Condition, Rule, Severity
from anchor.reconcile.settings import HOUR_MS, RuleSettings, newest
from anchor.reconcile.snapshot import BayWeight, DeviceSeen, GatewaySeen, Snapshot

CHAIN_COLUMNS = (
    "id",
    "kind",
    "warehouse",
    "gateway",
    "device",
    "seq_from",
    "seq_to",
    "event_ids",
    "detail",
    "created_ms",
    "resolved_ms",
)


@dataclass(frozen=True, slots=True)
class ChainRecordRow:
    """One row of ``chain_records`` (``anchor.chain``)."""

    id: int
    kind: ChainRecord
    warehouse: str
    gateway: str
    device: str
    seq_from: int
    seq_to: int
    event_ids: tuple[str, ...]
    detail: str
    created_ms: int
    resolved_ms: int | None

    @classmethod
    def from_row(cls, row: Sequence[object]) -> ChainRecordRow:
        """From ``SELECT id, kind, warehouse, gateway, device, seq_from, seq_to, event_ids,
        detail, created_ms, resolved_ms FROM chain_records`` (``CHAIN_COLUMNS``)."""
        if len(row) != len(CHAIN_COLUMNS):
            raise AnchorError(
                f"chain record row: got {len(row)} columns, want {len(CHAIN_COLUMNS)}"
            )
        rid, kind, warehouse, gateway, device, start, end, ids, detail, created, resolved = row
        return cls(
            id=int(str(rid)),
            kind=ChainRecord(kind),
            warehouse=str(warehouse),
            gateway=str(gateway),
            device=str(device),
            seq_from=int(str(start)),
            seq_to=int(str(end)),
            event_ids=tuple(i for i in str(ids).split(",") if i),
            detail=str(detail),
            created_ms=int(str(created)),
            resolved_ms=None if resolved is None else int(str(resolved)),
        )

    def open_at(self, at_ms: int) -> bool:
        return self.created_ms <= at_ms and (self.resolved_ms is None or self.resolved_ms > at_ms)


def weight_conditions(
    snapshot: Snapshot, index: StockIndex, settings: RuleSettings
) -> list[Condition]:
    out = []
    for w in snapshot.weights:
        since = w.disagree_since_ms
        if (
            w.unknown_skus
            or since is None
            or w.latest_ms - since <= settings.weight_mismatch_for_ms
        ):
            continue
        assert w.first_disagree_id is not None  # set together with disagree_since_ms
        diff = w.grams - w.book_grams
        lines = index.by_bay.get((w.warehouse, w.bay), [])
        head = tuple(dict.fromkeys((w.first_disagree_id, w.latest_id)))
        stock_ids = evidence_of(lines, max(settings.max_evidence - len(head), 0))
        out.append(
            Condition(
                rule=Rule.WEIGHT_MISMATCH,
                severity=_weight_severity(w, settings),
                warehouse=w.warehouse,
                subject=f"bay:{w.bay}",
                message=(
                    f"bay {w.bay}: load cells read {w.grams} g, book stock weighs "
                    f"{w.book_grams} g ({diff:+d} g), disagreeing for "
                    f"{_hours(w.latest_ms - since)} h with no movement recorded to explain it"
                ),
                evidence=head + stock_ids,
                observed_ms=since,
                device=w.device,
            )
        )
    return out


def _weight_severity(w: BayWeight, settings: RuleSettings) -> Severity:
    """Less weight than book: MAJOR, CRITICAL beyond ``weight_critical_pct`` of the book
    (goods gone); more weight than book (goods unrecorded): WARNING."""
    missing = w.book_grams - w.grams
    if missing <= 0:
        return Severity.WARNING
    if 100 * missing > settings.weight_critical_pct * abs(w.book_grams):
        return Severity.CRITICAL
    return Severity.MAJOR


def silent_conditions(snapshot: Snapshot, settings: RuleSettings, at_ms: int) -> list[Condition]:
    """A gateway none of whose devices beat in time is one condition; otherwise per device."""
    devices: dict[tuple[str, str], list[DeviceSeen]] = defaultdict(list)
    for d in snapshot.devices:
        devices[(d.warehouse, d.gateway)].append(d)
    out = []
    for g in snapshot.gateways():
        members = devices[(g.warehouse, g.gateway)]
        if (
            _silence(g.last_heartbeat_ms, min(d.first_ms for d in members), at_ms)
            > settings.silent_after_ms
        ):
            out.append(_gateway_silent(g, members, settings, at_ms))
            continue
        for d in members:
            quiet = _silence(d.last_heartbeat_ms, d.first_ms, at_ms)
            if quiet > settings.silent_after_ms:
                out.append(_device_silent(d, quiet, settings))
    return out


def _silence(last_ms: int | None, first_ms: int, at_ms: int) -> int:
    return at_ms - (first_ms if last_ms is None else last_ms)


def _device_silent(d: DeviceSeen, quiet: int, settings: RuleSettings) -> Condition:
    long = quiet > settings.silent_major_after_ms
    last = "never" if d.last_heartbeat_ms is None else f"{_hours(quiet)} h ago"
    return Condition(
        rule=Rule.DEVICE_SILENT,
        severity=Severity.MAJOR if long else Severity.WARNING,
        warehouse=d.warehouse,
        subject=f"device:{d.gateway}/{d.device}",
        message=f"device {d.device} of gateway {d.gateway}: last heartbeat {last}",
        evidence=() if d.last_heartbeat_id is None else (d.last_heartbeat_id,),
        observed_ms=d.first_ms if d.last_heartbeat_ms is None else d.last_heartbeat_ms,
        device=d.device,
    )


def _gateway_silent(
    g: GatewaySeen, members: list[DeviceSeen], settings: RuleSettings, at_ms: int
) -> Condition:
    last_ms = (
        g.last_heartbeat_ms if g.last_heartbeat_ms is not None else min(d.first_ms for d in members)
    )
    quiet = at_ms - last_ms
    long = quiet > settings.silent_major_after_ms
    return Condition(
        rule=Rule.DEVICE_SILENT,
        severity=Severity.CRITICAL if long else Severity.MAJOR,
        warehouse=g.warehouse,
        subject=f"gateway:{g.gateway}",
        message=(
            f"gateway {g.gateway}: none of its {len(members)} devices has sent a heartbeat for "
            f"{_hours(quiet)} h"
        ),
        evidence=newest(
            tuple(d.last_heartbeat_id for d in members if d.last_heartbeat_id),
            settings.max_evidence,
        ),
        observed_ms=last_ms,
    )


def chain_conditions(records: Sequence[ChainRecordRow], at_ms: int) -> list[Condition]:
    """Open GAP records: CHAIN_GAP, MAJOR. FORK / TAMPER records: TAMPER, CRITICAL."""
    out = []
    for r in records:
        if not r.open_at(at_ms):
            continue
        gap = r.kind is ChainRecord.GAP
        span = f"seq {r.seq_from}" if r.seq_from == r.seq_to else f"seq {r.seq_from}..{r.seq_to}"
        out.append(
            Condition(
                rule=Rule.CHAIN_GAP if gap else Rule.TAMPER,
                severity=Severity.MAJOR if gap else Severity.CRITICAL,
                warehouse=r.warehouse,
                subject=f"chain:{r.kind.value}:{r.gateway}/{r.device}:{r.seq_from}-{r.seq_to}",
                message=(
                    f"{r.kind.value} in the event chain of {r.gateway}/{r.device} at {span}: "
                    f"{r.detail}"
                ),
                evidence=r.event_ids,
                observed_ms=r.created_ms,
                device=r.device,
            )
        )
    return out


def tamper_conditions(
    snapshot: Snapshot,
    bad_signatures: Mapping[str, int],
    settings: RuleSettings,
    at_ms: int,
) -> list[Condition]:
    """TAMPER events of the last ``tamper_signal_for_ms``, one condition per device (MAJOR);
    bad-signature quarantine counts, one per warehouse with a count > 0 (MAJOR)."""
    signals: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    reasons: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    last: dict[tuple[str, str, str], int] = {}
    for t in snapshot.tampers:
        if at_ms - settings.tamper_signal_for_ms <= t.ts_ms <= at_ms:
            key = (t.warehouse, t.gateway, t.device)
            signals[key].append(t.event_id)
            reasons[key].append(t.reason)
            last[key] = t.ts_ms
    out = [
        Condition(
            rule=Rule.TAMPER,
            severity=Severity.MAJOR,
            warehouse=warehouse,
            subject=f"tamper-signal:{gateway}/{device}",
            message=(
                f"device {device} of gateway {gateway} reported tampering {len(ids)} time(s): "
                + "; ".join(dict.fromkeys(reasons[(warehouse, gateway, device)]))
            ),
            evidence=newest(tuple(ids), settings.max_evidence),
            observed_ms=last[(warehouse, gateway, device)],
            device=device,
        )
        for (warehouse, gateway, device), ids in sorted(signals.items())
    ]
    for warehouse, count in sorted(bad_signatures.items()):
        if count > 0:
            out.append(
                Condition(
                    rule=Rule.TAMPER,
                    severity=Severity.MAJOR,
                    warehouse=warehouse,
                    subject="quarantine:bad_signature",
                    message=(
                        f"{count} message(s) for warehouse {warehouse} quarantined with a bad "
                        "signature (altered after signing, or forged)"
                    ),
                    evidence=(),
                    observed_ms=at_ms,
                )
            )
    return out


def _hours(ms: int) -> str:
    return f"{Decimal(ms) / HOUR_MS:.1f}"
