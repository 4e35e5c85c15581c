"""Every dashboard query, run against a real InfluxDB 1.x holding metrics the pipeline produced.

The data: five reconciler rounds one minute apart over a real anchor store (SQLite): signed
events ingested by the real `Ingestor` (one from an unenrolled gateway, one redelivered, one
leaving a gap in device d2's chain), sequenced into the Merkle log by the real `Sequencer`,
checkpoints cosigned and anchored (the same UPDATE the publisher makes), alerts opened and
resolved by the real alert lifecycle, stock falling under a loan's warning and liquidation
lines. The points come from the real collectors (`ingest_points`, `store_points`,
`collateral_points`, `gateway_points`) and go through a real `MetricsWriter` (which adds its
`pw_metrics` points) into Debian's InfluxDB 1.6 over its v1 `/write`.

Each panel's InfluxQL is then expanded the way Grafana does (`$timeFilter`, `$__interval`,
multi-value template variables as regex groups; the template variables' own `SHOW TAG VALUES`
queries give the "All" values) and must return exactly the series and values worked out by
hand from the scenario below. A test also checks that no panel target is left without an
expectation.
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.error
from collections import Counter
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from anchor import metrics as anchor_metrics
from anchor.alerts.lifecycle import apply_conditions
from anchor.alerts.model import Scope
from anchor.config import LogSection
from anchor.ingest import Ingestor
from anchor.loanbook import Loan, LoanBook, Pledge, PledgeType, Price
from anchor.log import Sequencer
from anchor.reconcile.conditions import Condition, Rule, Severity
from anchor.reconcile.snapshot import Snapshot, StockLine
from anchor.registry import enrol, load_keys
from dashboards import build
from gateway import metrics as gateway_metrics
from gateway.health import GatewayHealth, HealthState
from pledgewatch.metricpoint import MetricsWriter, SinkRefused, SinkUnavailable
from pledgewatch.signing import SigningKey

from servers import InfluxDB1Server
from store_rig import BASE_MS, Gateway, open_store

DB = "pledgewatch"
STEP_MS = 60_000
STEPS = 5
START_MS = BASE_MS  # 15:06:40 UTC: five 1-minute buckets 15:06 … 15:10, one round in each
END_MS = BASE_MS + 4 * STEP_MS + 30_000
INTERVAL = "1m"
DAY = dt.date(2025, 6, 15)


# --- the scenario: five reconciler rounds -----------------------------------------------------

STOCK = [(60, 40), (60, 40), (60, 20), (60, 20), (60, 10)]  # WR-1 steel in bays b1, b2
GATEWAY = [  # state, outbox depth, oldest unsent age (ms)
    (HealthState.OK, 5, 2000), (HealthState.OK, 3, 1000), (HealthState.DEGRADED, 40, 30_000),
    (HealthState.ALARM, 120, 90_000), (HealthState.OK, 0, None),
]  # fmt: skip


def loan_book() -> LoanBook:
    def loan(loan_id: str, kind: PledgeType, outstanding: str, floor: str) -> Loan:
        return Loan(loan_id, "acme", "wh-1", "CNY", Decimal(outstanding), DAY,
                    DAY + dt.timedelta(days=90), kind, Decimal("0.7"), Decimal("1.3"),
                    Decimal("1.1"), Decimal(floor))  # fmt: skip

    return LoanBook(
        loans=(loan("L-1", PledgeType.STATIC, "1000", "0"),
               loan("L-2", PledgeType.DYNAMIC, "100", "150")),
        pledges=(Pledge("L-1", "WR-1", "steel", 100), Pledge("L-2", None, "copper", 0)),
        prices=(Price("steel", DAY, Decimal("15")), Price("copper", DAY, Decimal("4"))),
    )  # fmt: skip


def snapshot(step: int, now: int) -> Snapshot:
    def line(bay: str, lot: str, sku: str, qty: int) -> StockLine:
        return StockLine("wh-1", bay, lot, sku, qty, None, None, None, (), now)

    b1, b2 = STOCK[step]
    stock = (line("b1", "WR-1", "steel", b1), line("b2", "WR-1", "steel", b2),
             line("b3", "C-7", "copper", 50))  # fmt: skip
    return Snapshot(stock=stock, unloads=(), weights=(), devices=(), tampers=())


def conditions(step: int, now: int) -> list[Condition]:
    short = Condition(Rule.SHORTFALL, Severity.MAJOR, "wh-1", "lot:WR-1", "short", (), now)
    silent = Condition(Rule.DEVICE_SILENT, Severity.WARNING, "wh-1", "device:d2", "q", (), now)
    breach = Condition(Rule.COVERAGE_BREACH, Severity.CRITICAL, "wh-1", "loan:L-1", "b", (), now)
    gap = Condition(Rule.CHAIN_GAP, Severity.MAJOR, "wh-1", "device:d2", "gap", (), now)
    return [[], [], [short, silent], [short, silent], [short, breach, gap]][step]


class InfluxV1Sink:
    """A `LineSink` writing each batch through InfluxDB 1.x's v1 `/write?precision=ms`."""

    def __init__(self, server: InfluxDB1Server) -> None:
        self.server = server

    def write(self, lines: Sequence[str]) -> None:
        try:
            self.server.write(DB, lines)
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise (SinkRefused if exc.code < 500 else SinkUnavailable)(body) from exc
        except OSError as exc:
            raise SinkUnavailable(str(exc)) from exc

    def close(self) -> None:
        pass


def run_pipeline(server: InfluxDB1Server, tmp_path: Path) -> None:
    """The five rounds; every point goes through a MetricsWriter into `server`."""
    db = open_store(f"sqlite:///{tmp_path / 'anchor.db'}")
    gw = Gateway("wh-1", "gw-1")
    stranger = Gateway("wh-1", "gw-x")  # never enrolled: unknown_key
    enrol(db, "wh-1", "gw-1", gw.key.public_key, now_ms=START_MS)
    ingestor = Ingestor(load_keys(db.read()), "worker-1")
    log = LogSection(checkpoint_interval_ms=1000, checkpoint_max_entries=100, gap_timeout_s=60)
    sequencer = Sequencer(db, "test/log", SigningKey.generate(), log)
    clock = [START_MS]
    writers = [
        MetricsWriter(InfluxV1Sink(server), buffer_points=10_000, flush_interval_ms=1000,
                      stats_tags=tags, clock=lambda: clock[0])
        for tags in ({"component": "anchor", "worker": "worker-1"},
                     {"component": "gateway", "warehouse": "wh-1", "gateway": "gw-1"})
    ]  # fmt: skip
    counts: Counter[str] = Counter()
    first = [gw.event("d1"), gw.event("d1"), gw.event("d2")]
    again = gw.event("d1")  # d1 seq 3, sent twice at step 1: stored, then a duplicate
    batches = [
        [(gw, first)],
        [(gw, [again]), (gw, [again]), (stranger, [stranger.event("d9")])],
        [(gw, [gw.event("d2", seq=3, prev="ab" * 32)])],  # d2 seq 2 never arrives
        [(gw, [gw.event("d1")])],
        [],
    ]
    try:
        for step in range(STEPS):
            now = START_MS + step * STEP_MS
            for sender, batch in batches[step]:
                with db.transaction() as tx:
                    result = ingestor.process(tx, [sender.message(e) for e in batch], now)
                counts.update(result.counts)
            sequencer.step(now + 1000)
            with db.transaction() as tx:
                if step == 2:  # the bank's witness cosigns checkpoint 5, as the publisher does
                    tx.execute("UPDATE checkpoints SET cosigned_note = 'c' WHERE size = 5")
                if step == 3:  # the ledger anchors checkpoint 6
                    tx.execute("UPDATE checkpoints SET ledger_receipt = 'l' WHERE size = 6")
                if step == 4:
                    tx.execute("UPDATE checkpoints SET cosigned_note = 'c' WHERE size = 7")
            apply_conditions(db, conditions(step, now), now, scope=Scope.of(["wh-1"]))
            state, depth, oldest = GATEWAY[step]
            health = GatewayHealth(state, (), "wh-1", "gw-1", now, True, depth, 1000, oldest,
                                   now - 500)  # fmt: skip
            gw_counters = {"events_built": 10 * (step + 1), "receipted": 10 * step}
            anchor_points = [
                *anchor_metrics.ingest_points("worker-1", counts, now),
                *anchor_metrics.store_points(db, now + 2000),
                *anchor_metrics.collateral_points(snapshot(step, now), loan_book(), now),
            ]
            clock[0] = now + 3000
            writers[0].record_all(anchor_points)
            writers[1].record_all(gateway_metrics.gateway_points(health, gw_counters))
            for writer in writers:
                writer.flush_once(force_stats=True)
                stats = writer.stats()
                assert (stats.buffered, stats.dropped, stats.failed_writes) == (0, 0, 0), stats
    finally:
        db.close()


@pytest.fixture(scope="module")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxDB1Server]:
    """One InfluxDB for the module, fed once with the scenario (module scope: the fixture in
    conftest is per test, and the rounds take a few seconds)."""
    from servers import require_binary

    server = InfluxDB1Server(binary=require_binary("influxd"))
    server.start()
    try:
        server.create_database(DB)
        run_pipeline(server, tmp_path_factory.mktemp("pipeline"))
        yield server
    finally:
        server.close()


# --- Grafana's expansion of the macros and variables -------------------------------------------

_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def regex_value(values: Sequence[str]) -> str:
    """How Grafana's InfluxDB data source puts a multi-value/All variable into `/^$v$/`: each
    value regex-escaped, one value bare, several as `(a|b)`."""
    escaped = [_REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(query: str, variables: dict[str, list[str]]) -> str:
    text = query.replace("$timeFilter", f"time >= {START_MS}ms and time <= {END_MS}ms")
    text = text.replace("$__interval", INTERVAL)
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace(f"${name}", regex_value(variables[name]))
    assert not re.search(r"\$\w", text), f"unexpanded variable or macro in {text}"
    return text


def run(server: InfluxDB1Server, query: str) -> list[dict[str, Any]]:
    (result,) = server.query(DB, query)["results"]
    assert "error" not in result, (query, result)
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def variable_values(server: InfluxDB1Server, board: dict[str, Any]) -> dict[str, list[str]]:
    """Run the board's template variable queries in order (a later one may use an earlier
    one); every option selected, as "All" does."""
    values: dict[str, list[str]] = {}
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        rows = run(server, expand(variable["query"], values))
        values[variable["name"]] = sorted({value for s in rows for _, value in s["values"]})
    return values


def digest(series: list[dict[str, Any]]) -> dict[str, dict[str, list[Any]]]:
    """{"tag=value,…" (sorted, "" without tags): {column: values in time order}}."""
    out: dict[str, dict[str, list[Any]]] = {}
    for s in series:
        key = ",".join(f"{k}={v}" for k, v in sorted(s.get("tags", {}).items()))
        columns = s["columns"][1:]
        out[key] = {c: [row[i + 1] for row in s["values"]] for i, c in enumerate(columns)}
    return out


def targets(uid: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (board["uid"], panel["title"], target)
        for board in build.models()
        if uid is None or board["uid"] == uid
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


# --- what each panel must show, worked out from the scenario ------------------------------------

COVERAGE, WAREHOUSE = "pledgewatch-loan-coverage", "pledgewatch-warehouse"
PIPELINE, EVIDENCE = "pledgewatch-pipeline", "pledgewatch-evidence"
W1 = "worker=worker-1"
NO_REJECTS = [0, 0, 0, 0]
TAMPER_REASONS = ["bad_signature", "key_gateway_mismatch", "key_revoked", "topic_mismatch"]
ALL_REASONS = [*TAMPER_REASONS, "bad_topic", "key_not_yet_valid", "malformed"]

EXPECTED: dict[tuple[str, str], dict[str, dict[str, list[Any]]]] = {
    # L-1: 100 then 80 then 70 units of steel at 15 against 1000 outstanding; lines 1.3 / 1.1.
    (COVERAGE, "Loans below the warning line"): {"": {"loans": [1]}},
    (COVERAGE, "Loans below the liquidation line"): {"": {"loans": [1]}},
    # SHORTFALL from round 2, COVERAGE_BREACH added in round 4.
    (COVERAGE, "Open business alerts"): {"": {"open": [0, 0, 1, 1, 2]}},
    (COVERAGE, "Coverage by loan"): {
        "loan=L-1": {"last": [1.5, 1.5, 1.2, 1.2, 1.05]},
        "loan=L-2": {"last": [2.0] * 5},  # 50 copper at 4 against 100
    },
    (COVERAGE, "Headroom above the warning line"): {
        "loan=L-1": {"last_last": pytest.approx([0.2, 0.2, -0.1, -0.1, -0.25])},
        "loan=L-2": {"last_last": pytest.approx([0.7] * 5)},
    },
    (COVERAGE, "Loans: value, outstanding, lines"): {
        "currency=CNY,loan=L-1,warehouse=wh-1": {
            "coverage": [1.05],
            "warning": [1.3],
            "liquidation": [1.1],
            "value": [1050.0],
            "outstanding": [1000.0],
            "unpriced_skus": [0],
        },
        "currency=CNY,loan=L-2,warehouse=wh-1": {
            "coverage": [2.0],
            "warning": [1.3],
            "liquidation": [1.1],
            "value": [200.0],
            "outstanding": [100.0],
            "unpriced_skus": [0],
        },
    },
    (COVERAGE, "Shortfalls: pledged lots with less book stock than pledged"): {
        "loan=L-1,lot=WR-1,sku=steel": {"book_qty": [70], "pledged_qty": [100], "shortfall": [30]}
    },
    (COVERAGE, "Book stock minus pledged, by lot"): {
        "loan=L-1,lot=WR-1": {"last_last": [0, 0, -20, -20, -30]},
        "loan=L-2,lot=": {"last_last": [50] * 5},  # dynamic pledge: no lot, 0 units pledged
    },
    (WAREHOUSE, "Book stock by lot"): {
        "lot=WR-1,sku=steel": {"last": [100, 100, 80, 80, 70]},  # bays b1 + b2 summed
        "lot=,sku=copper": {"last": [50] * 5},
    },
    (WAREHOUSE, "Stock against pledges"): {
        "loan=L-1,lot=WR-1,sku=steel,warehouse=wh-1": {"book_qty": [70], "pledged_qty": [100]},
        "loan=L-2,lot=,sku=copper,warehouse=wh-1": {"book_qty": [50], "pledged_qty": [0]},
    },
    (WAREHOUSE, "Book stock by bay and lot"): {  # the last round's lines
        "bay=b1,lot=WR-1,sku=steel": {"book_qty": [60]},
        "bay=b2,lot=WR-1,sku=steel": {"book_qty": [10]},
        "bay=b3,lot=C-7,sku=copper": {"book_qty": [50]},
    },
    (WAREHOUSE, "Gateway state"): {"gateway=gw-1": {"last": [0, 0, 1, 2, 0]}},
    # Seen 2 s before each store reading; d1 last received in rounds 1 and 3, d2 in 0 and 2.
    (WAREHOUSE, "Device silence"): {
        "device=d1,gateway=gw-1": {"last": [2, 2, 62, 2, 62]},
        "device=d2,gateway=gw-1": {"last": [2, 62, 2, 62, 122]},
    },
    (WAREHOUSE, "Devices"): {
        "device=d1,gateway=gw-1,warehouse=wh-1": {"seq": [4], "unchained": [0], "silent_s": [62]},
        "device=d2,gateway=gw-1,warehouse=wh-1": {"seq": [3], "unchained": [2], "silent_s": [122]},
    },
    (PIPELINE, "Outbox depth"): {"gateway=gw-1,warehouse=wh-1": {"last": [5, 3, 40, 120, 0]}},
    (PIPELINE, "Oldest unreceipted event"): {"gateway=gw-1": {"last": [2, 1, 30, 90, 0]}},
    (PIPELINE, "Ingest per minute"): {
        W1: {"stored": [1, 1, 1, 0], "duplicates": [1, 0, 0, 0], "rejected": [1, 0, 0, 0]}
    },
    (PIPELINE, "Rejects by reason"): {
        f"reason=unknown_key,{W1}": {"non_negative_difference": [1, 0, 0, 0]},
        **{f"reason={r},{W1}": {"non_negative_difference": NO_REJECTS} for r in ALL_REASONS},
    },
    # Checkpoints 4, 5, 6, 7 cut 1 s into rounds 0-3; 5 witnessed in round 2, 6 anchored in
    # round 3, 7 witnessed in round 4; read 2 s into each round.
    (PIPELINE, "Checkpoint, witness and ledger lag"): {
        "": {
            "checkpoint_age": [1, 1, 1, 1, 61],
            "witness_lag": [1, 61, 1, 61, 0],
            "ledger_lag": [1, 61, 121, 1, 61],
        }
    },
    (PIPELINE, "Events waiting for the log"): {"": {"last": [0] * 5}},
    (PIPELINE, "Open infrastructure alerts"): {"": {"open": [0, 0, 1, 1, 0]}},
    (PIPELINE, "Metric points lost"): {
        "component=anchor,gateway=,worker=worker-1": {"last": [0] * 5},
        "component=gateway,gateway=gw-1,worker=": {"last": [0] * 5},
    },
    (EVIDENCE, "Log, checkpointed, witnessed and anchored size"): {
        "": {
            "log": [4, 5, 6, 7, 7],
            "checkpointed": [4, 5, 6, 7, 7],
            "witnessed": [0, 0, 5, 5, 7],
            "anchored": [0, 0, 0, 6, 6],
        }
    },
    (EVIDENCE, "Entries not yet witnessed"): {"": {"entries": [0]}},
    (EVIDENCE, "Entries not yet anchored"): {"": {"entries": [1]}},
    (EVIDENCE, "Open tamper alerts"): {"": {"open": [0, 0, 0, 0, 1]}},  # CHAIN_GAP, round 4
    (EVIDENCE, "Events missing from device chains"): {"": {"missing": [0, 0, 2, 2, 2]}},
    (EVIDENCE, "Messages refused for signature or key"): {
        f"reason=unknown_key,{W1}": {"non_negative_difference": [1, 0, 0, 0]},
        **{f"reason={r},{W1}": {"non_negative_difference": NO_REJECTS} for r in TAMPER_REASONS},
    },
}

VARIABLES = {
    COVERAGE: {"warehouse": ["wh-1"], "loan": ["L-1", "L-2"]},
    WAREHOUSE: {"warehouse": ["wh-1"]},
    PIPELINE: {"warehouse": ["wh-1"]},
    EVIDENCE: {},
}


def test_every_panel_target_has_an_expectation() -> None:
    panels = [(uid, title) for uid, title, _ in targets()]
    assert len(panels) == len(set(panels)), "one target per panel; extend EXPECTED's key"
    assert set(panels) == set(EXPECTED)


@pytest.mark.parametrize("uid", list(VARIABLES))
def test_template_variables_list_what_the_pipeline_wrote(influx: InfluxDB1Server, uid: str) -> None:
    (board,) = [b for b in build.models() if b["uid"] == uid]
    assert variable_values(influx, board) == VARIABLES[uid]


@pytest.mark.parametrize(("uid", "title"), list(EXPECTED))
def test_panel_query_returns_the_expected_series(
    influx: InfluxDB1Server, uid: str, title: str
) -> None:
    (target,) = [t for u, p, t in targets(uid) if p == title]
    query = expand(target["query"], VARIABLES[uid])
    assert digest(run(influx, query)) == EXPECTED[uid, title], query


def test_loan_variable_filters_the_coverage_board(influx: InfluxDB1Server) -> None:
    """With only L-2 picked (healthy dynamic pledge), L-1's breach disappears from the board."""
    picked = {"warehouse": ["wh-1"], "loan": ["L-2"]}
    found = {title: digest(run(influx, expand(t["query"], picked))) for _, title, t in
             targets(COVERAGE)}  # fmt: skip
    assert found["Loans below the warning line"] == {}
    assert found["Coverage by loan"] == {"loan=L-2": {"last": [2.0] * 5}}
    assert found["Shortfalls: pledged lots with less book stock than pledged"] == {}
    assert list(found["Loans: value, outstanding, lines"]) == [
        "currency=CNY,loan=L-2,warehouse=wh-1"
    ]


def test_grafana_regex_form_of_variables() -> None:
    assert regex_value(["L-1"]) == "L-1"
    assert regex_value(["a.b", "c/d"]) == r"(a\.b|c\/d)"
    assert expand('"loan" =~ /^$loan$/ AND $timeFilter', {"loan": ["x", "y"]}) == (
        f'"loan" =~ /^(x|y)$/ AND time >= {START_MS}ms and time <= {END_MS}ms'
    )


def test_influxdb1_server_takes_v1_writes_and_refuses_type_conflicts(
    influxdb1: InfluxDB1Server,
) -> None:
    """The conftest fixture: a private influxd (RPC port moved off the default 8088 too); a
    field whose type changes is refused with 400, which the sink reports as `SinkRefused`."""
    assert influxdb1.rpc_port not in {0, 8088, influxdb1.port}
    influxdb1.create_database(DB)
    sink = InfluxV1Sink(influxdb1)
    sink.write([f"pw_log size=5i {START_MS}"])
    with pytest.raises(SinkRefused, match="field type conflict"):
        sink.write([f"pw_log size=5.5 {START_MS + 1}"])
    found = run(influxdb1, f'SELECT "size" FROM "pw_log" WHERE time >= {START_MS}ms')
    assert digest(found) == {"": {"size": [5]}}
