"""Pipeline health: is evidence flowing from the gateways' outboxes into the anchor's log, and
are checkpoints, the witness and the ledger keeping up?

Reads `pw_gateway`, `pw_ingest`, `pw_rejects`, `pw_log`, `pw_alerts` (infrastructure) and
`pw_metrics` (the metrics writer's own losses). Counters are turned into rates with
`non_negative_derivative`, so a process restart (counter back to 0) shows no negative spike.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards.influxql import InfluxQL, datasource_variable, matches, tag_variable
from dashboards.panels import GREEN, ORANGE, latest, series, thresholds

UID = "pledgewatch-pipeline"
IN_WAREHOUSE = matches("warehouse")


def build() -> dash.Dashboard:
    return (
        dash.Dashboard("pledgewatch · Pipeline health")
        .uid(UID)
        .description("Outboxes, ingest, rejects, and checkpoint / witness / ledger lag.")
        .tags(["pledgewatch", "operations"])
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("utc")
        .with_variable(datasource_variable())
        .with_variable(tag_variable("warehouse", "Warehouse", "pw_gateway"))
        .with_row(dash.Row("Gateways"))
        .with_panel(
            series(
                "Outbox depth",
                "Signed events waiting at each gateway for the anchor's receipt.",
                InfluxQL(
                    f'SELECT last("outbox_depth") FROM "pw_gateway" WHERE {IN_WAREHOUSE} AND '
                    '$timeFilter GROUP BY time($__interval), "warehouse", "gateway" fill(none)',
                    alias="$tag_gateway",
                ),
            )
        )
        .with_panel(
            series(
                "Oldest unreceipted event",
                "Age of the oldest event still in each gateway's outbox (0: empty).",
                InfluxQL(
                    'SELECT last("oldest_unsent_age_ms") / 1000 FROM "pw_gateway" WHERE '
                    f'{IN_WAREHOUSE} AND $timeFilter GROUP BY time($__interval), "gateway" '
                    "fill(none)",
                    alias="$tag_gateway",
                ),
                unit="s",
            )
        )
        .with_row(dash.Row("Anchor"))
        .with_panel(
            series(
                "Ingest per minute",
                "Events stored, redelivered duplicates and quarantined messages, per worker.",
                InfluxQL(
                    'SELECT non_negative_derivative(last("stored"), 1m) AS "stored", '
                    'non_negative_derivative(last("duplicates"), 1m) AS "duplicates", '
                    'non_negative_derivative(last("rejected"), 1m) AS "rejected" '
                    'FROM "pw_ingest" WHERE $timeFilter GROUP BY time($__interval), "worker" '
                    "fill(none)",
                    alias="$tag_worker $col",
                ),
                unit="short",
            )
        )
        .with_panel(
            series(
                "Rejects by reason",
                "Messages quarantined per interval, by reason (bad_signature, unknown_key, …).",
                InfluxQL(
                    'SELECT non_negative_difference(last("count")) FROM "pw_rejects" WHERE '
                    '$timeFilter GROUP BY time($__interval), "worker", "reason" fill(none)',
                    alias="$tag_reason",
                ),
            )
        )
        .with_panel(
            series(
                "Checkpoint, witness and ledger lag",
                "Age of the latest checkpoint; how long the oldest checkpoint has waited for "
                "the bank's witness and for the ledger.",
                InfluxQL(
                    'SELECT last("checkpoint_age_ms") / 1000 AS "checkpoint_age", '
                    'last("witness_lag_ms") / 1000 AS "witness_lag", '
                    'last("ledger_lag_ms") / 1000 AS "ledger_lag" FROM "pw_log" WHERE '
                    "$timeFilter GROUP BY time($__interval) fill(none)",
                ),
                unit="s",
            )
        )
        .with_panel(
            series(
                "Events waiting for the log",
                "Events stored but not yet sequenced into the Merkle log.",
                InfluxQL(
                    'SELECT last("unsequenced") FROM "pw_log" WHERE $timeFilter '
                    "GROUP BY time($__interval) fill(none)",
                    alias="unsequenced",
                ),
            )
        )
        .with_row(dash.Row("Monitoring itself"))
        .with_panel(
            latest(
                "Open infrastructure alerts",
                "Device silence, outbox and other infrastructure alerts now open.",
                InfluxQL(
                    'SELECT sum("open") AS "open" FROM (SELECT last("open") AS "open" FROM '
                    '"pw_alerts" WHERE "category" = \'infrastructure\' AND $timeFilter '
                    'GROUP BY time($__interval), "rule", "severity") WHERE $timeFilter '
                    "GROUP BY time($__interval) fill(none)"
                ),
                steps=thresholds(GREEN, (1, ORANGE)),
                span=8,
            )
        )
        .with_panel(
            series(
                "Metric points lost",
                "Points each metrics writer dropped since it started (buffer full, or refused "
                "by the TSDB); a rise means gaps in every other panel.",
                InfluxQL(
                    'SELECT last("dropped") FROM "pw_metrics" WHERE $timeFilter '
                    'GROUP BY time($__interval), "component", "worker", "gateway" fill(none)',
                    alias="$tag_component $tag_worker$tag_gateway",
                ),
                span=16,
            )
        )
    )
