"""The chaos run's verdict, read from raw rows and files only (never from counters):

- ``check_events``: the stored events are exactly the simulator's ground truth plus the
  gateways' own heartbeats, each once, every device chain 1..n and prev-linked, ending at the
  head the gateway's own state file holds; nothing quarantined, no chain record.
- ``check_proofs``: a proof file for every stored event, accepted by the verifier of
  ``pledgewatch.prooffile`` (anchor key, the bank's witness cosignature, a ledger receipt);
  ``pledgewatch verify`` (the CLI, with ``--ledger``) on a seeded sample.
- ``check_log``: the log rebuilt from the raw event and key-record rows; every checkpoint's
  signature, its root at its size, its cosignature; consistency proofs between every
  consecutive pair of checkpoints and first → last; the witness's own state file holds the
  last checkpoint and no refusal (a fork or a bad consistency proof would be one).
- ``check_alerts``: the alerts are exactly the injected faults' ones, each opened once; every
  transition's message was delivered, and the receiver acknowledged each webhook-id once.

Every failure message starts with the seed, so the run can be replayed.
"""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from anchor.proofs import build_event_proof, build_event_proofs
from anchor.publish import LeafMirror
from anchor.store.db import Database
from pledgewatch.checkpoint import SignedNote, verify_checkpoint, verify_cosignature
from pledgewatch.events import ZERO_HASH
from pledgewatch.logentry import event_leaf_from_wire
from pledgewatch.merkle import MerkleTree, leaf_hash
from pledgewatch.merkle.verify import verify_consistency
from pledgewatch.prooffile import WitnessKey, verify_proof_file

from anchor_rig import ORIGIN, WITNESS_NAME, cli
from chaos_rig import committed_heads, events_of, expected_alerts
from chaos_run import SECRET, ChaosRun


@dataclass
class Figures:
    seed: int
    events: int = 0
    simulated: int = 0
    gateway_heartbeats: int = 0
    proofs: int = 0
    proof_s: float = 0.0
    cli_verified: int = 0
    checkpoints: int = 0
    cosigned: int = 0
    alerts: list[str] = field(default_factory=list)
    webhooks: int = 0
    webhook_requests: int = 0
    failed_deliveries: int = 0  # attempts refused while the receiver was down
    kills: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"seed {self.seed}: {self.events} events ({self.simulated} simulated + "
            f"{self.gateway_heartbeats} gateway heartbeats), lost 0, duplicated 0; "
            f"{self.proofs} proof files verified in {self.proof_s:.1f}s "
            f"({self.cli_verified} by the CLI); {self.checkpoints} checkpoints "
            f"({self.cosigned} cosigned), all consistent; alerts {sorted(self.alerts)}; "
            f"{self.webhooks} webhooks delivered once each ({self.webhook_requests} requests "
            f"reached the receiver, {self.failed_deliveries} attempts failed while it was down); "
            f"kills {self.kills}"
        )


def check_all(run: ChaosRun, proof_dir: Path, cli_sample: int = 3) -> Figures:
    figures = Figures(run.seed, kills=run.killer.counts())
    check_events(run, figures)
    check_log(run, figures)
    check_proofs(run, figures, proof_dir, cli_sample)
    check_alerts(run, figures)
    return figures


def check_events(run: ChaosRun, figures: Figures) -> None:
    seed = run.seed
    rows = run.anchor.query("SELECT gateway, device, seq, event_id, prev FROM events")
    ids = [str(r[3]) for r in rows]
    assert len(ids) == len(set(ids)), f"seed {seed}: an event id is stored twice"
    links = Counter((r[0], r[1], r[2]) for r in rows)
    twice = [k for k, n in links.items() if n > 1]
    assert not twice, f"seed {seed}: two events share (gateway, device, seq): {twice[:5]}"
    chains = events_of(rows)
    truth = run.truth.chains
    heads = {
        gw: committed_heads(rig.workdir / "state" / "gateway.db")
        for gw, rig in run.gateways.items()
    }
    own = {(gw, gw) for gw in run.gateways}
    unknown = set(chains) - set(truth) - own
    assert not unknown, f"seed {seed}: chains nobody generated: {sorted(unknown)[:5]}"
    for link, want in truth.items():
        got = [event_id for _, event_id, _ in chains.get(link, [])]
        if got != want:
            missing = set(want) - set(got)
            extra = set(got) - set(want)
            raise AssertionError(
                f"seed {seed}: chain {link}: stored {len(got)}, generated {len(want)}; "
                f"{len(missing)} missing, {len(extra)} not generated"
            )
        gw, device = link
        assert heads[gw].get(device) == (len(want), want[-1]), (
            f"seed {seed}: {link}: gateway head {heads[gw].get(device)}, want {len(want)}"
        )
    beats = 0
    for gw in run.gateways:
        chain = chains.get((gw, gw), [])
        head = heads[gw].get(gw)
        assert head is not None and chain, f"seed {seed}: {gw} sent no heartbeat of its own"
        assert [s for s, _, _ in chain] == list(range(1, head[0] + 1)), (
            f"seed {seed}: {gw}'s own chain has seqs {[s for s, _, _ in chain]}, head {head}"
        )
        assert chain[-1][1] == head[1], f"seed {seed}: {gw}'s own chain ends elsewhere"
        beats += len(chain)
    for link, chain in chains.items():
        prev = ZERO_HASH
        for seq, event_id, linked in chain:
            assert linked == prev, f"seed {seed}: {link} seq {seq} does not link to seq {seq - 1}"
            prev = event_id
    quarantined = run.anchor.query("SELECT reason, COUNT(*) FROM quarantine GROUP BY reason")
    assert quarantined == [], f"seed {seed}: quarantined: {quarantined}"
    records = run.anchor.query("SELECT kind, gateway, device FROM chain_records")
    assert records == [], f"seed {seed}: chain records (gap/fork/tamper): {records[:5]}"
    figures.events = len(rows)
    figures.simulated = run.truth.events
    figures.gateway_heartbeats = beats
    assert figures.events == figures.simulated + beats, f"seed {seed}: {figures.events} rows"


def _rebuild(run: ChaosRun) -> tuple[MerkleTree, dict[str, int]]:
    """The log from raw rows: event wires and key-record leaves at their leaf_index."""
    hashes: dict[int, bytes] = {}
    where: dict[str, int] = {}
    for event_id, wire, index in run.anchor.query("SELECT event_id, wire, leaf_index FROM events"):
        assert isinstance(index, int), f"seed {run.seed}: event {event_id} not in the log"
        assert index not in hashes, f"seed {run.seed}: two rows at log entry {index}"
        hashes[index] = leaf_hash(event_leaf_from_wire(bytes(wire)))  # type: ignore[arg-type]
        where[str(event_id)] = index
    for leaf, index in run.anchor.query("SELECT leaf, leaf_index FROM key_records"):
        assert isinstance(index, int) and index not in hashes, f"seed {run.seed}: key at {index}"
        hashes[index] = leaf_hash(bytes(leaf))  # type: ignore[arg-type]
    size = int(run.anchor.query("SELECT size FROM log_state WHERE id = 1")[0][0])  # type: ignore[call-overload]
    assert sorted(hashes) == list(range(size)), (
        f"seed {run.seed}: log entries are not exactly 0..{size - 1}"
    )
    return MerkleTree.from_leaf_hashes(hashes[i] for i in range(size)), where


def check_log(run: ChaosRun, figures: Figures) -> None:
    seed = run.seed
    tree, _ = _rebuild(run)
    anchor_key = run.anchor.key.public_key
    witness_key = run.anchor.witness_key.public_key
    rows = run.anchor.query(
        "SELECT size, note, cosigned_note FROM checkpoints ORDER BY size, created_ms"
    )
    assert rows, f"seed {seed}: no checkpoint"
    points: list[tuple[int, bytes]] = []
    cosigned = 0
    for size, note, cosigned_note in rows:
        cp = verify_checkpoint(str(note).encode(), ORIGIN, anchor_key, origin=ORIGIN)
        assert cp.size == size, f"seed {seed}: checkpoint row size {size}, note says {cp.size}"
        assert cp.root == tree.root(cp.size), (
            f"seed {seed}: checkpoint {size}: root is not the raw rows' root"
        )
        if cosigned_note is not None:
            signed = SignedNote.parse(str(cosigned_note).encode())
            verify_cosignature(signed, WITNESS_NAME, witness_key)
            assert signed.body == SignedNote.parse(str(note).encode()).body
            cosigned += 1
        points.append((cp.size, cp.root))
    # Consistency proofs as a third party would check them: from the tree, against the
    # roots the signed checkpoints state (sizes never shrink; equal sizes, equal roots).
    for (s1, r1), (s2, r2) in [*itertools.pairwise(points), (points[0], points[-1])]:
        assert s1 <= s2, f"seed {seed}: checkpoint sizes went back from {s1} to {s2}"
        verify_consistency(s1, s2, tree.consistency_proof(s1, s2), r1, r2)
    witness_db = run.anchor.workdir / "witness.db"
    conn = sqlite3.connect(f"file:{witness_db}?mode=ro", uri=True)
    try:
        refusals = conn.execute("SELECT status, reason FROM refusals").fetchall()
        state = conn.execute("SELECT size, root FROM logs WHERE origin = ?", (ORIGIN,)).fetchall()
    finally:
        conn.close()
    assert refusals == [], f"seed {seed}: the witness refused checkpoints: {refusals[:5]}"
    assert state == [(points[-1][0], points[-1][1])], (
        f"seed {seed}: witness state {state}, last checkpoint size {points[-1][0]}"
    )
    audit = cli("audit", "--config", str(run.anchor.config_path), check=False)
    assert audit.returncode == 0, f"seed {seed}: audit: {audit.stdout}{audit.stderr}"
    figures.checkpoints = len(rows)
    figures.cosigned = cosigned


def check_proofs(run: ChaosRun, figures: Figures, proof_dir: Path, cli_sample: int) -> None:
    """Every stored event gets a proof file and every one is verified (none sampled).

    Built by the anchor's batched path (``build_event_proofs``); for a seeded sample the
    one-at-a-time ``build_event_proof`` (what ``pledgewatch proof`` runs) must give the same
    bytes.
    """
    seed = run.seed
    proof_dir.mkdir(parents=True, exist_ok=True)
    witness = WitnessKey(WITNESS_NAME, run.anchor.witness_key.public_key)
    anchor_key = run.anchor.key.public_key
    _, where = _rebuild(run)
    ordered = sorted(where, key=where.__getitem__)
    db = Database(run.store)
    db.open()
    started = time.monotonic()
    try:
        mirror = LeafMirror()
        built = 0
        for event_id, data in build_event_proofs(db, ordered, mirror):
            path = proof_dir / f"{event_id}.json"
            path.write_bytes(data)
            proven = verify_proof_file(
                path.read_bytes(),
                anchor_key=anchor_key,
                witness_keys=[witness],
                require_ledger=True,
            )
            assert proven.event_id == event_id and proven.leaf_index == where[event_id], (
                f"seed {seed}: proof of {event_id} proves {proven.event_id} at {proven.leaf_index}"
            )
            built += 1
        assert built == len(where), f"seed {seed}: {built} proof files for {len(where)} events"
        for event_id in random.Random(seed).sample(ordered, 20):
            single = build_event_proof(db, event_id, mirror)
            assert single == (proof_dir / f"{event_id}.json").read_bytes(), (
                f"seed {seed}: batched and single proof files of {event_id} differ"
            )
    finally:
        db.close()
    figures.proof_s = time.monotonic() - started
    figures.proofs = len(where)
    ledger = run.anchor.workdir / "ledger.db"
    assert ledger.exists(), f"seed {seed}: no ledger file at {ledger}"
    for event_id in random.Random(seed).sample(sorted(where), cli_sample):
        result = cli(
            "verify",
            str(proof_dir / f"{event_id}.json"),
            "--anchor-key",
            anchor_key.hex(),
            "--witness-key",
            f"{WITNESS_NAME}:{witness.public_key.hex()}",
            "--ledger",
            f"sqlite://{ledger}",  # sqlite:// then the absolute path
            "--json",
            check=False,
        )
        assert result.returncode == 0, (
            f"seed {seed}: verify {event_id}: {result.stdout}{result.stderr}"
        )
        report = json.loads(result.stdout)
        assert report["ok"] and report["proven"]["event_id"] == event_id, report["summary"]
        assert report["proven"]["ledger_checked_online"], report["summary"]
        figures.cli_verified += 1


def check_alerts(run: ChaosRun, figures: Figures) -> None:
    seed = run.seed
    alerts = run.anchor.query("SELECT id, rule, loan_id, subject, state FROM alerts ORDER BY id")
    fired = [(str(r), None if ln is None else str(ln), str(s)) for _, r, ln, s, _ in alerts]
    want = expected_alerts(run.truth)
    assert sorted(fired, key=str) == sorted(want, key=str), (
        f"seed {seed}: alerts fired {fired}, want each of {sorted(want, key=str)} once"
    )
    assert all(state != "resolved" for *_, state in alerts), f"seed {seed}: {alerts}"
    transitions = run.anchor.query("SELECT alert_id, kind, webhook_id FROM alert_transitions")
    kinds = Counter((a, k) for a, k, _ in transitions)
    for alert_id, *_ in alerts:
        assert kinds[(alert_id, "opened")] == 1, f"seed {seed}: alert {alert_id}: {kinds}"
    assert {k for _, k, _ in transitions} <= {"opened", "escalated"}, f"seed {seed}: {kinds}"
    outbox = run.anchor.query("SELECT message_id, delivered_ms, dead, attempts FROM webhook_outbox")
    messages = sorted(str(m) for m, *_ in outbox)
    assert messages == sorted(str(w) for *_, w in transitions), (
        f"seed {seed}: outbox {messages} vs transitions {transitions}"
    )
    assert all(d is not None and not dead for _, d, dead, _ in outbox), f"seed {seed}: {outbox}"
    failed = sum(int(n) for *_, n in outbox) - len(outbox)  # type: ignore[call-overload]
    assert failed >= 1, f"seed {seed}: no delivery ever failed: the receiver was never down"
    delivered = run.receiver.delivered()
    assert dict(delivered) == dict.fromkeys(messages, 1), (
        f"seed {seed}: receiver acked {dict(delivered)}, want each of {messages} once"
    )
    verifier = Webhook(SECRET)
    requests = run.receiver.requests()
    for request in requests:
        payload = verifier.verify(request.body, request.headers)
        assert payload["type"] in ("alert.opened", "alert.escalated"), payload["type"]
    figures.alerts = [rule for rule, _, _ in fired]
    figures.webhooks = len(delivered)
    figures.webhook_requests = len(requests)
    figures.failed_deliveries = failed
