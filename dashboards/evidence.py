"""Evidence: how much of the Merkle log is covered by signed checkpoints, by the bank's
witness cosignature and by a ledger anchor, and the signals that evidence was tampered with.

Reads `pw_log`, `pw_device` (`unchained`: events missing from a device's hash chain),
`pw_rejects` (messages refused for their signature or key) and `pw_alerts` (tamper). There is
no metric per proof served or verified, so proof status is shown as log coverage: an event
is offline-provable with a witnessed (anchored) checkpoint once the witnessed (anchored) size
passed its index.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards.influxql import InfluxQL, datasource_variable
from dashboards.panels import GREEN, ORANGE, RED, latest, series, thresholds

UID = "pledgewatch-evidence"
# Reasons that point at forged or misrouted evidence rather than a broken gateway.
TAMPER_REASONS = "bad_signature|key_revoked|unknown_key|key_gateway_mismatch|topic_mismatch"


def build() -> dash.Dashboard:
    return (
        dash.Dashboard("pledgewatch · Evidence")
        .uid(UID)
        .description("Checkpoints, witness cosignatures, ledger anchors and tamper signals.")
        .tags(["pledgewatch", "evidence"])
        .time("now-24h", "now")
        .refresh("1m")
        .timezone("utc")
        .with_variable(datasource_variable())
        .with_row(dash.Row("Log coverage"))
        .with_panel(
            series(
                "Log, checkpointed, witnessed and anchored size",
                "Entries in the log and the sizes of the latest checkpoint, the latest one "
                "the witness cosigned and the latest one anchored on the ledger.",
                InfluxQL(
                    'SELECT last("size") AS "log", last("checkpoint_size") AS "checkpointed", '
                    'last("witnessed_size") AS "witnessed", last("anchored_size") AS '
                    '"anchored" FROM "pw_log" WHERE $timeFilter GROUP BY time($__interval) '
                    "fill(none)",
                ),
                span=24,
            )
        )
        .with_panel(
            latest(
                "Entries not yet witnessed",
                "Checkpointed entries the bank's witness has not cosigned yet.",
                InfluxQL(
                    'SELECT last("checkpoint_size") - last("witnessed_size") AS "entries" '
                    'FROM "pw_log" WHERE $timeFilter'
                ),
                steps=thresholds(GREEN, (1, ORANGE)),
            )
        )
        .with_panel(
            latest(
                "Entries not yet anchored",
                "Checkpointed entries not yet covered by a ledger anchor.",
                InfluxQL(
                    'SELECT last("checkpoint_size") - last("anchored_size") AS "entries" '
                    'FROM "pw_log" WHERE $timeFilter'
                ),
                steps=thresholds(GREEN, (1, ORANGE)),
            )
        )
        .with_panel(
            latest(
                "Open tamper alerts",
                "Open alerts of the tamper category (forged, replayed or missing evidence).",
                InfluxQL(
                    'SELECT sum("open") AS "open" FROM (SELECT last("open") AS "open" FROM '
                    '"pw_alerts" WHERE "category" = \'tamper\' AND $timeFilter '
                    'GROUP BY time($__interval), "rule", "severity") WHERE $timeFilter '
                    "GROUP BY time($__interval) fill(none)"
                ),
                steps=thresholds(GREEN, (1, RED)),
            )
        )
        .with_panel(
            latest(
                "Events missing from device chains",
                "Sum over devices of seq minus the end of the gapless chain prefix.",
                InfluxQL(
                    'SELECT sum("unchained") AS "missing" FROM (SELECT last("unchained") AS '
                    '"unchained" FROM "pw_device" WHERE $timeFilter GROUP BY time($__interval),'
                    ' "warehouse", "gateway", "device") WHERE $timeFilter '
                    "GROUP BY time($__interval) fill(none)"
                ),
                steps=thresholds(GREEN, (1, RED)),
            )
        )
        .with_row(dash.Row("Refused evidence"))
        .with_panel(
            series(
                "Messages refused for signature or key",
                "Quarantined per interval: bad signatures, unknown or revoked keys, "
                "a key used by the wrong gateway, a topic that does not match the event.",
                InfluxQL(
                    'SELECT non_negative_difference(last("count")) FROM "pw_rejects" WHERE '
                    f'"reason" =~ /^({TAMPER_REASONS})$/ AND $timeFilter '
                    'GROUP BY time($__interval), "worker", "reason" fill(none)',
                    alias="$tag_reason",
                ),
                span=24,
            )
        )
    )
