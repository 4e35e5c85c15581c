"""The demo's verdict: expected vs fired alerts per rule, the figures, where the files are."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from gateway.demo.world import EXPECTED, Expected


@dataclass(frozen=True, slots=True)
class Match:
    """Alerts fired, sorted into the expected ones (one each) and the rest."""

    found: dict[Expected, dict[str, Any]]
    missing: tuple[Expected, ...]
    unexpected: tuple[dict[str, Any], ...]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unexpected


def compare(alerts: list[dict[str, Any]]) -> Match:
    """Each expected alert must be fired exactly once (same rule, subject); nothing else."""
    found: dict[Expected, dict[str, Any]] = {}
    rest = []
    for alert in alerts:
        want = next(
            (
                e
                for e in EXPECTED
                if e not in found
                and alert.get("rule") == e.rule
                and str(alert.get("subject", "")).startswith(e.subject)
            ),
            None,
        )
        if want is None:
            rest.append(alert)
        else:
            found[want] = alert
    missing = tuple(e for e in EXPECTED if e not in found)
    return Match(found, missing, tuple(rest))


@dataclass
class Outcome:
    folder: Path
    broker: str
    status: dict[str, Any] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    delivered: int = 0  # alert.opened webhooks the receiver verified
    refused_webhooks: int = 0
    proof: Path | None = None
    proof_verified: bool = False
    proof_report: str = ""  # verify's verdict line
    statement: tuple[Path, ...] = ()
    statement_summary: str = ""
    leftovers: list[str] = field(default_factory=list)  # processes or ports still there
    elapsed_s: float = 0.0

    @property
    def match(self) -> Match:
        return compare(self.alerts)

    @property
    def ok(self) -> bool:
        return (
            self.match.ok
            and self.proof_verified
            and bool(self.statement)
            and self.delivered == len(self.alerts)
            and self.refused_webhooks == 0
            and not self.leftovers
        )


def print_summary(o: Outcome, out: TextIO) -> None:
    s = o.status
    rows = [
        ("broker", o.broker),
        ("events stored", f"{s.get('events', 0):,}"),
        ("log size (events + key leaves)", f"{s.get('log_size', 0):,}"),
        ("latest checkpoint", f"{s.get('latest_checkpoint')}"),
        ("witnessed up to", f"{s.get('witnessed_size')}"),
        ("ledger anchors up to", f"{s.get('anchored_size')}"),
        ("quarantined", f"{s.get('quarantined', 0)}"),
    ]
    print("\n== summary " + "=" * 60, file=out)
    for name, value in rows:
        print(f"{name:34} {value}", file=out)
    match = o.match
    fired = Counter(str(a.get("rule")) for a in o.alerts)
    wanted = Counter(e.rule for e in EXPECTED)
    print(f"\n{'alerts per rule':34} {'expected':>8} {'fired':>6}  cause", file=out)
    for rule in sorted(set(fired) | set(wanted)):
        causes = ", ".join(sorted({e.cause for e in EXPECTED if e.rule == rule})) or "-"
        mark = "ok" if fired[rule] == wanted[rule] else "MISMATCH"
        print(f"  {rule:32} {wanted[rule]:>8} {fired[rule]:>6}  {causes} [{mark}]", file=out)
    for e in match.missing:
        print(f"  missing: {e.rule} {e.subject}… ({e.cause})", file=out)
    for a in match.unexpected:
        print(f"  unexpected: {a.get('rule')} {a.get('subject')}: {a.get('message')}", file=out)
    print(
        f"{'webhooks verified (alert.opened)':34} {o.delivered} of {len(o.alerts)}, "
        f"{o.refused_webhooks} refused",
        file=out,
    )
    print(
        f"\n{'proof file':34} {o.proof} ({'verified' if o.proof_verified else 'NOT verified'})",
        file=out,
    )
    for path in o.statement:
        print(f"{'statement':34} {path}", file=out)
    print(f"{'configs, logs, stores':34} {o.folder}", file=out)
    print(
        f"{'processes and ports left':34} {', '.join(o.leftovers) if o.leftovers else 'none'}",
        file=out,
    )
    print(f"{'wall time':34} {o.elapsed_s:.1f} s", file=out)
    print(
        f"\nresult: {'OK — every expected alert fired, nothing else' if o.ok else 'FAILED'}",
        file=out,
    )
