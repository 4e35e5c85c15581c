"""Loan coverage: the bank's risk view — every loan's coverage against its warning and
liquidation lines, pledged stock short of what the loan needs, and open business alerts.

Reads `pw_coverage`, `pw_stock` (written by the reconciler from the same functions as the
COVERAGE and SHORTFALL rules, so the board never disagrees with an alert) and `pw_alerts`.
`pw_alerts` carries no loan or warehouse tag, so the alert panels are bank-wide.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash

from dashboards.influxql import InfluxQL, datasource_variable, matches, tag_variable
from dashboards.panels import GREEN, ORANGE, RED, latest, rows, series, thresholds

UID = "pledgewatch-loan-coverage"
LOANS = f"{matches('warehouse')} AND {matches('loan')}"


def build() -> dash.Dashboard:
    return (
        dash.Dashboard("pledgewatch · Loan coverage")
        .uid(UID)
        .description("Coverage of every loan against its warning and liquidation lines.")
        .tags(["pledgewatch", "risk"])
        .time("now-7d", "now")
        .refresh("1m")
        .timezone("utc")
        .with_variable(datasource_variable())
        .with_variable(tag_variable("warehouse", "Warehouse", "pw_coverage"))
        .with_variable(tag_variable("loan", "Loan", "pw_coverage", where=matches("warehouse")))
        .with_row(dash.Row("Coverage"))
        .with_panel(
            latest(
                "Loans below the warning line",
                "Loans in force whose latest coverage is under their warning line "
                "(margin call territory).",
                InfluxQL(
                    'SELECT count("coverage") AS "loans" FROM (SELECT last("coverage") AS '
                    '"coverage", last("warning") AS "warning" FROM "pw_coverage" WHERE '
                    f'{LOANS} AND $timeFilter GROUP BY "loan") WHERE "coverage" < "warning"'
                ),
                steps=thresholds(GREEN, (1, ORANGE)),
            )
        )
        .with_panel(
            latest(
                "Loans below the liquidation line",
                "Loans in force whose latest coverage is under their liquidation line.",
                InfluxQL(
                    'SELECT count("coverage") AS "loans" FROM (SELECT last("coverage") AS '
                    '"coverage", last("liquidation") AS "liquidation" FROM "pw_coverage" WHERE '
                    f'{LOANS} AND $timeFilter GROUP BY "loan") WHERE "coverage" < "liquidation"'
                ),
                steps=thresholds(GREEN, (1, RED)),
            )
        )
        .with_panel(
            latest(
                "Open business alerts",
                "Open COVERAGE, SHORTFALL, double-pledge and release alerts, all loans.",
                InfluxQL(
                    'SELECT sum("open") AS "open" FROM (SELECT last("open") AS "open" FROM '
                    '"pw_alerts" WHERE "category" = \'business\' AND $timeFilter '
                    'GROUP BY time($__interval), "rule", "severity") WHERE $timeFilter '
                    "GROUP BY time($__interval) fill(none)"
                ),
                steps=thresholds(GREEN, (1, ORANGE)),
                span=12,
            )
        )
        .with_panel(
            series(
                "Coverage by loan",
                "Collateral value ÷ outstanding; compare with each loan's lines in the table.",
                InfluxQL(
                    'SELECT last("coverage") FROM "pw_coverage" WHERE '
                    f'{LOANS} AND $timeFilter GROUP BY time($__interval), "loan" fill(none)',
                    alias="$tag_loan",
                ),
                unit="percentunit",
            )
        )
        .with_panel(
            series(
                "Headroom above the warning line",
                "Coverage minus the warning line; below zero the loan needs a top-up.",
                InfluxQL(
                    'SELECT last("coverage") - last("warning") FROM "pw_coverage" WHERE '
                    f'{LOANS} AND $timeFilter GROUP BY time($__interval), "loan" fill(none)',
                    alias="$tag_loan",
                ),
                unit="percentunit",
            )
        )
        .with_panel(
            rows(
                "Loans: value, outstanding, lines",
                "Latest figures per loan; unpriced SKUs are valued at 0.",
                InfluxQL(
                    'SELECT last("coverage") AS "coverage", last("warning") AS "warning", '
                    'last("liquidation") AS "liquidation", last("value") AS "value", '
                    'last("outstanding") AS "outstanding", last("unpriced_skus") AS '
                    f'"unpriced_skus" FROM "pw_coverage" WHERE {LOANS} AND $timeFilter '
                    'GROUP BY "warehouse", "loan", "currency"',
                    table=True,
                ),
                span=24,
            )
        )
        .with_row(dash.Row("Pledged stock"))
        .with_panel(
            rows(
                "Shortfalls: pledged lots with less book stock than pledged",
                "Static pledges whose lot holds fewer units than the loan pledged.",
                InfluxQL(
                    'SELECT "book_qty", "pledged_qty", "shortfall" FROM (SELECT '
                    'last("book_qty") AS "book_qty", last("pledged_qty") AS "pledged_qty", '
                    'last("pledged_qty") - last("book_qty") AS "shortfall" FROM "pw_stock" '
                    f'WHERE {LOANS} AND $timeFilter GROUP BY "loan", "lot", "sku") '
                    'WHERE "shortfall" > 0 GROUP BY "loan", "lot", "sku"',
                    table=True,
                ),
            )
        )
        .with_panel(
            series(
                "Book stock minus pledged, by lot",
                "Units above (positive) or short of (negative) the pledge.",
                InfluxQL(
                    'SELECT last("book_qty") - last("pledged_qty") FROM "pw_stock" WHERE '
                    f'{LOANS} AND $timeFilter GROUP BY time($__interval), "loan", "lot" '
                    "fill(none)",
                    alias="$tag_loan $tag_lot",
                ),
            )
        )
    )
