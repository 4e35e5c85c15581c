"""The read API against a real store (see api_rig): coverage as the reconciler computes it,
alerts with filters, paging and acknowledgement, proof files that verify offline and equal
what `pledgewatch proof` writes, checkpoints and consistency proofs that verify, statements
from the statement code, the OpenAPI document matching the routes, and the CLI (tokens,
config, `api run`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from anchor import config as anchor_config
from anchor.alerts import config as alerts_config
from anchor.alerts import lifecycle
from anchor.alerts.model import AlertState, TransitionKind
from anchor.api import config as api_config
from anchor.api import tokens
from anchor.api.server import ROUTES, static_file
from anchor.loans import book_at
from anchor.proofs import build_event_proof
from anchor.reconcile.batch import events_frame, snapshot_from_frame
from anchor.reconcile.collateral import StockIndex, collateral_value, lot_pledges
from anchor.reconcile.conditions import Rule
from anchor.reconcile.engine import logged_events
from anchor.reconcile.settings import day_of
from anchor.reconcile.snapshot import StateConfig
from anchor.statement import LogTrust, build_statement, daily_csv
from anchor.store.db import Database
from anchor.store.schema import migrate
from pledgewatch.checkpoint import verify_checkpoint
from pledgewatch.cli import main
from pledgewatch.events import Kind
from pledgewatch.merkle import verify_consistency
from pledgewatch.prooffile import VerificationFailed, verify_proof_file
from pledgewatch.signing import SigningKey

from api_rig import (
    NOW,
    ORIGIN,
    Api,
    Portal,
    Store,
    at,
    build_store,
    call,
    serve,
    store_events,
)
from servers import free_port


def config_text(store_url: str, api: str = "") -> str:
    return (
        f'[anchor]\norigin = "{ORIGIN}"\nkey_file = "anchor.key"\nstore = "{store_url}"\n'
        f'\n[mqtt]\nhost = "127.0.0.1"\n{api}'
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    folder = tmp_path_factory.mktemp("api")
    built = build_store(f"sqlite:///{folder / 'anchor.db'}", folder)
    (folder / "anchor.toml").write_text(config_text(built.db.url), encoding="utf-8")
    yield built
    built.db.close()


@pytest.fixture(scope="module")
def api(store: Store) -> Iterator[Api]:
    with serve(store) as running:
        yield running


def test_every_route_is_in_the_openapi_document_and_back(api: Api) -> None:
    doc = json.loads(static_file("openapi.json"))
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    assert documented == {(r.method, r.template) for r in ROUTES}
    for route in ROUTES:
        item = doc["paths"][route.template][route.method.lower()]
        public = item.get("security") == []
        assert public == (route.role is None), route.template
        queried = {p["name"] for p in item.get("parameters", []) if p["in"] == "query"}
        assert queried == set(route.query), route.template
    served = call(f"{api.url}/openapi.json")
    assert served.status == 200 and served.body == static_file("openapi.json")


def expected_coverage(store: Store) -> dict[str, tuple[str, str]]:
    """What the reconciler's batch mode values each loan at NOW: (value, ratio)."""
    events = logged_events(store.db, NOW)
    frame = events_frame((i, s.event) for i, s in events)
    index = StockIndex(snapshot_from_frame(frame, NOW, StateConfig()))
    book = book_at(store.db, NOW)
    assert book is not None
    out = {}
    for loan in book.loans:
        value, _, _ = collateral_value(book, loan, lot_pledges(book), index, day_of(NOW))
        out[loan.loan_id] = (format(value, "f"), f"{value / loan.outstanding:.4f}")
    return out


@pytest.mark.slow
def test_loans_coverage_is_the_reconcilers_on_each_backend(store_url: str, tmp_path: Path) -> None:
    built = build_store(store_url, tmp_path)
    try:
        with serve(built) as running:
            answer = call(f"{running.url}/v1/loans", running.viewer)
            one = call(f"{running.url}/v1/loans/L-BREACH", running.viewer)
            missing = call(f"{running.url}/v1/loans/L-NOPE", running.viewer)
            proof = call(f"{running.url}/v1/events/{built.unload.event_id}/proof", running.viewer)
        want = expected_coverage(built)
        active = lifecycle.list_alerts(built.db, (AlertState.OPEN, AlertState.ACKNOWLEDGED))
    finally:
        built.db.close()
    assert answer.status == 200
    loans = {x["loan_id"]: x for x in answer.json()["loans"]}
    got = {k: (x["coverage"]["collateral_value"], x["coverage"]["ratio"]) for k, x in loans.items()}
    assert (
        got
        == want
        == {
            "L-OK": ("1000000.00", "2.0000"),
            "L-WARN": ("500000.00", "1.2500"),
            "L-BREACH": ("400000.00", "0.8000"),
        }
    )
    # The state agrees with the alerts the live reconciler raised for the same loans.
    coverage_alerts = {
        a.loan_id: a.rule for a in active if a.rule in (Rule.COVERAGE_WARNING, Rule.COVERAGE_BREACH)
    }
    assert coverage_alerts == {"L-WARN": Rule.COVERAGE_WARNING, "L-BREACH": Rule.COVERAGE_BREACH}
    assert {k: x["coverage"]["state"] for k, x in loans.items()} == {
        "L-OK": "ok",
        "L-WARN": "warning",
        "L-BREACH": "breach",
    }
    assert loans["L-BREACH"]["active_alerts"] == sum(a.loan_id == "L-BREACH" for a in active)
    assert one.status == 200 and one.json()["coverage"] == loans["L-BREACH"]["coverage"]
    assert missing.status == 404 and "L-NOPE" in missing.json()["detail"]
    verify_proof_file(proof.body, anchor_key=built.anchor_key.public_key)


def test_proof_file_is_what_the_cli_writes_and_verifies(api: Api, store: Store) -> None:
    event_id = store.unload.event_id
    answer = call(f"{api.url}/v1/events/{event_id}/proof", api.viewer)
    assert answer.status == 200
    assert answer.headers["Content-Disposition"] == f'attachment; filename="{event_id}.proof.json"'
    written = store.folder / "cli.proof.json"
    assert (
        main(["proof", event_id, "-o", str(written), "--config", str(store.folder / "anchor.toml")])
        == 0
    )
    assert answer.body == written.read_bytes() == build_event_proof(store.db, event_id)
    verified = verify_proof_file(answer.body, anchor_key=store.anchor_key.public_key)
    assert verified.signed.event_id == event_id and verified.origin == ORIGIN
    latest = store.db.read().one("SELECT MAX(size) FROM checkpoints")[0]
    assert verified.size == latest
    tampered = answer.body.replace(b'"qty":40', b'"qty":4')
    assert tampered != answer.body
    with pytest.raises(VerificationFailed):
        verify_proof_file(tampered, anchor_key=store.anchor_key.public_key)
    bad = call(f"{api.url}/v1/events/{'A' * 64}/proof", api.viewer)
    unknown = call(f"{api.url}/v1/events/{'0' * 64}/proof", api.viewer)
    assert bad.status == 400 and "64 lowercase hex" in bad.json()["detail"]
    assert unknown.status == 404 and "0" * 64 in unknown.json()["detail"]


def test_event_not_yet_in_the_log_is_a_409_to_retry(api: Api, store: Store) -> None:
    late = store.portal.move(Kind.LOAD, at(5, 11), "WR-LATE", 1)
    store_events(store.db, [late], NOW)  # stored, not yet sequenced
    answer = call(f"{api.url}/v1/events/{late.event_id}/proof", api.viewer)
    assert answer.status == 409 and "retry" in answer.json()["detail"]


def test_latest_checkpoint_and_consistency_proofs_verify(api: Api, store: Store) -> None:
    latest = call(f"{api.url}/v1/checkpoints/latest", api.viewer).json()
    checkpoint = verify_checkpoint(
        latest["note"].encode(), ORIGIN, store.anchor_key.public_key, origin=ORIGIN
    )
    assert (checkpoint.size, checkpoint.root.hex()) == (latest["size"], latest["root"])
    rows = store.db.read().all("SELECT size, root FROM checkpoints ORDER BY size")
    assert latest["size"] == rows[-1][0] and len(rows) == 4
    for size, root in rows:
        answer = call(f"{api.url}/v1/consistency?first={size}", api.viewer)
        body = answer.json()
        assert answer.status == 200 and body["second"] == latest["size"]
        assert body["first_root"] == bytes(root).hex()
        proof = [bytes.fromhex(h) for h in body["proof"]]
        verify_consistency(size, checkpoint.size, proof, bytes(root), checkpoint.root)
    for query in (
        "first=0",
        "first=3&second=2",
        f"first=1&second={latest['size'] + 1}",
        "second=2",
    ):
        refused = call(f"{api.url}/v1/consistency?{query}", api.viewer)
        assert refused.status == 400, query
        assert "first" in refused.json()["detail"]


def test_alert_filters_and_paging(api: Api, store: Store) -> None:
    everything = call(f"{api.url}/v1/alerts?state=all&limit=500", api.viewer).json()
    ids = [a["alert_id"] for a in everything["alerts"]]
    assert ids == sorted(ids, reverse=True) and everything["next_before"] is None
    paged: list[int] = []
    before = ""
    while True:
        page = call(f"{api.url}/v1/alerts?state=all&limit=2{before}", api.viewer).json()
        paged += [a["alert_id"] for a in page["alerts"]]
        if page["next_before"] is None:
            break
        before = f"&before={page['next_before']}"
    assert paged == ids
    breach = call(f"{api.url}/v1/alerts?loan=L-BREACH", api.viewer).json()["alerts"]
    assert {a["rule"] for a in breach} == {
        "COVERAGE_BREACH",
        "SHORTFALL",
        "UNAUTHORIZED_RELEASE",
    }
    release = call(f"{api.url}/v1/alerts?rule=UNAUTHORIZED_RELEASE&severity=critical", api.viewer)
    (only,) = release.json()["alerts"]
    assert store.unload.event_id in [e["event_id"] for e in only["evidence"]]
    assert call(f"{api.url}/v1/alerts?state=resolved", api.viewer).json()["alerts"] == []
    one = call(f"{api.url}/v1/alerts/{only['alert_id']}", api.viewer)
    assert one.status == 200 and one.json() == only
    for query, word in (
        ("rule=NOPE", "rule"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("before=x", "before"),
        ("colour=red", "colour"),
        ("loan=a&loan=b", "twice"),
        ("severity=huge", "severity"),
    ):
        refused = call(f"{api.url}/v1/alerts?{query}", api.viewer)
        assert refused.status == 400, query
        assert refused.headers["Content-Type"] == "application/problem+json"
        assert word in refused.json()["detail"], query
    assert call(f"{api.url}/v1/alerts/999999", api.viewer).status == 404
    assert call(f"{api.url}/v1/alerts/abc", api.viewer).status == 400


def test_officer_acknowledges_once_and_it_is_recorded(api: Api, store: Store) -> None:
    (warn,) = call(f"{api.url}/v1/alerts?rule=COVERAGE_WARNING", api.viewer).json()["alerts"]
    url = f"{api.url}/v1/alerts/{warn['alert_id']}/acknowledge"
    first = call(url, api.officer, method="POST")
    again = call(url, api.officer, method="POST")
    assert first.status == 200 and first.json()["changed"] is True
    assert first.json()["state"] == "acknowledged"
    assert first.json()["acknowledged_by"] == "olga.officer"
    assert again.status == 200 and again.json()["changed"] is False
    transitions = lifecycle.transitions_of(store.db, warn["alert_id"])
    acks = [t for t in transitions if t.kind is TransitionKind.ACKNOWLEDGED]
    assert len(acks) == 1 and acks[0].by == "olga.officer" and acks[0].at_ms == NOW
    assert call(f"{api.url}/v1/alerts/999999/acknowledge", api.officer, method="POST").status == 404
    wrong_method = call(url, api.officer)
    assert wrong_method.status == 405 and wrong_method.headers["Allow"] == "POST"


def test_statement_csv_and_html_come_from_the_statement_code(api: Api, store: Store) -> None:
    base = f"{api.url}/v1/loans/L-BREACH/statement?from=2026-03-01&to=2026-03-05"
    csv_answer = call(base, api.viewer)
    html_answer = call(base + "&format=html", api.viewer)
    made = build_statement(
        store.db, "L-BREACH", dt.date(2026, 3, 1), dt.date(2026, 3, 5), store.trust, NOW
    )
    assert csv_answer.status == 200 and csv_answer.headers["Content-Type"].startswith("text/csv")
    assert csv_answer.body.decode() == daily_csv(made)
    lines = csv_answer.body.decode().splitlines()
    assert lines[3].startswith("2026-03-03,400000.00,500000.00,0.8000,") and "breach" in lines[3]
    assert html_answer.status == 200 and b"L-BREACH" in html_answer.body
    assert b"<script" not in html_answer.body
    cases = [
        ("/v1/loans/L-BREACH/statement?from=2026-03-05&to=2026-03-01", 400, "period"),
        ("/v1/loans/L-BREACH/statement?to=2026-03-01", 400, "from"),
        ("/v1/loans/L-BREACH/statement?from=2026-3-1&to=2026-03-01", 400, "from"),
        ("/v1/loans/L-BREACH/statement?from=2026-03-01&to=2026-03-02&format=pdf", 400, "format"),
        ("/v1/loans/L-NOPE/statement?from=2026-03-01&to=2026-03-02", 404, "L-NOPE"),
    ]
    for path, status, word in cases:
        refused = call(api.url + path, api.viewer)
        assert refused.status == status, path
        assert word in refused.json()["detail"], path


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    from pledgewatch import cli  # the entry point's parser, with our streams

    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        code = cli.main(list(argv))
    finally:
        sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


def test_token_commands_show_the_token_once_and_store_only_its_hash(tmp_path: Path) -> None:
    config = tmp_path / "anchor.toml"
    config.write_text(config_text("sqlite:anchor.db", '\n[api]\nlisten = "127.0.0.1:0"\n'))
    code, out, err = run_cli(
        "api", "token", "add", "--user", "olga", "--role", "officer", "--config", str(config)
    )
    assert code == 0, err
    token = out.split()[0]
    # The anchor's and the alerts' loaders of the same file accept the [api] table.
    assert anchor_config.load(config).anchor.origin == ORIGIN
    assert alerts_config.load(config).store.endswith("anchor.db")
    assert api_config.load(config).api.port == 0
    assert token.startswith("pwt_") and len(token) == 47
    code, listing, _ = run_cli("api", "token", "list", "--config", str(config), "--json")
    (row,) = json.loads(listing)
    assert (row["user"], row["role"], row["revoked"]) == ("olga", "officer", None)
    assert token not in listing
    raw = tokens.decode(token)
    assert raw is not None
    stored = (tmp_path / "anchor.db").read_bytes()
    assert (
        hashlib.sha256(raw).digest() in stored
        and token.encode() not in stored
        and raw not in stored
    )
    assert run_cli("api", "token", "revoke", "olga", "--config", str(config))[0] == 0
    code, _, err = run_cli("api", "token", "revoke", "olga", "--config", str(config))
    assert code == 1 and "no active API token" in err
    code, _, err = run_cli(
        "api", "token", "add", "--user", "bad name", "--role", "viewer", "--config", str(config)
    )
    assert code == 2 and "user" in err
    config.write_text(config_text("sqlite:anchor.db", '\n[api]\nlisten = "nowhere"\nport = 1\n'))
    code, _, err = run_cli("api", "token", "list", "--config", str(config))
    assert code == 2 and "api.listen" in err and "api.port: unknown key" in err


@pytest.mark.slow
def test_api_run_serves_until_sigterm(store: Store) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    token = tokens.add(store.db, "cli.viewer", tokens.Role.VIEWER, NOW).text
    process = subprocess.Popen(
        [sys.executable, "-m", "pledgewatch.cli", "api", "run", "--config",
         str(store.folder / "anchor.toml"), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if call(f"{url}/healthz").status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        me = call(f"{url}/v1/me", token)
        assert me.status == 200 and me.json() == {"user": "cli.viewer", "role": "viewer"}
        assert call(f"{url}/v1/loans").status == 401
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err.decode()[-2000:]
    assert f"api listening on {url}" in out.decode()


def test_an_empty_store_answers_empty_lists_and_404s(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    db.open()
    migrate(db)
    key = SigningKey.generate()
    unused = Portal(key).move(Kind.LOAD, NOW, "WR-0", 1)  # never stored
    empty = Store(db, tmp_path, key, Portal(key), unused, LogTrust(ORIGIN, key.public_key))
    try:
        with serve(empty) as running:
            loans = call(f"{running.url}/v1/loans", running.viewer)
            assert loans.status == 200
            assert {k: v for k, v in loans.json().items() if k != "at"} == {
                "book_version": None,
                "loans": [],
            }
            assert call(f"{running.url}/v1/alerts", running.viewer).json() == {
                "alerts": [],
                "next_before": None,
            }
            for path in (
                "/v1/checkpoints/latest",
                "/v1/consistency?first=1",
                "/v1/loans/L-1",
                "/v1/loans/L-1/statement?from=2026-03-01&to=2026-03-02",
            ):
                answer = call(running.url + path, running.viewer)
                assert answer.status == 404, (path, answer.body)
    finally:
        db.close()


def test_concurrent_requests_share_the_store_safely(api: Api, store: Store) -> None:
    """Many clients at once (a thread each on the server) get complete, identical answers."""
    paths = [
        "/v1/loans",
        "/v1/alerts?state=all&limit=500",
        f"/v1/events/{store.unload.event_id}/proof",
        "/v1/consistency?first=1",
    ]
    want = {p: call(api.url + p, api.viewer).body for p in paths}

    def fetch(i: int) -> tuple[str, int, bytes]:
        path = paths[i % len(paths)]
        answer = call(api.url + path, api.viewer)
        return path, answer.status, answer.body

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(fetch, range(80)))
    for path, status, body in results:
        assert status == 200 and body == want[path], path
