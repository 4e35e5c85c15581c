"""Warehouse overview: book stock by lot and bay, and whether the devices that prove it still
report.

Reads `pw_stock` (book stock per pledged lot, or per eligible SKU for dynamic pledges),
`pw_bay_stock` (every stock line: bay × lot × SKU), `pw_device` and `pw_gateway`.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from dashboards.influxql import InfluxQL, datasource_variable, matches, tag_variable
from dashboards.panels import GREEN, ORANGE, RED, YELLOW, latest, rows, series, thresholds

UID = "pledgewatch-warehouse"
IN_WAREHOUSE = matches("warehouse")
STATES = {"0": ("ok", GREEN), "1": ("degraded", YELLOW), "2": ("alarm", ORANGE),
          "3": ("offline", RED)}  # fmt: skip


def _state_names() -> list[model.ValueMapping]:
    """Gateway `state` numbers (gateway.health.HealthState order) shown as words."""
    options = {
        value: model.ValueMappingResult(text=text, color=colour, index=int(value))
        for value, (text, colour) in STATES.items()
    }
    return [model.ValueMap(options)]


def build() -> dash.Dashboard:
    return (
        dash.Dashboard("pledgewatch · Warehouse overview")
        .uid(UID)
        .description("Book stock by lot and the health of the devices and gateways behind it.")
        .tags(["pledgewatch", "warehouse"])
        .time("now-24h", "now")
        .refresh("1m")
        .timezone("utc")
        .with_variable(datasource_variable())
        .with_variable(tag_variable("warehouse", "Warehouse", "pw_stock"))
        .with_row(dash.Row("Stock"))
        .with_panel(
            series(
                "Book stock by lot",
                "Units per lot and SKU (dynamic pledges: per eligible SKU, no lot).",
                InfluxQL(
                    f'SELECT last("book_qty") FROM "pw_stock" WHERE {IN_WAREHOUSE} AND '
                    '$timeFilter GROUP BY time($__interval), "lot", "sku" fill(none)',
                    alias="$tag_lot $tag_sku",
                ),
            )
        )
        .with_panel(
            rows(
                "Stock against pledges",
                "Latest book and pledged units per loan, lot and SKU.",
                InfluxQL(
                    'SELECT last("book_qty") AS "book_qty", last("pledged_qty") AS '
                    f'"pledged_qty" FROM "pw_stock" WHERE {IN_WAREHOUSE} AND $timeFilter '
                    'GROUP BY "warehouse", "loan", "lot", "sku"',
                    table=True,
                ),
            )
        )
        .with_panel(
            rows(
                "Book stock by bay and lot",
                "Latest book units of every stock line: each lot's SKU in each bay, pledged or "
                "not.",
                InfluxQL(
                    'SELECT last("book_qty") AS "book_qty" FROM "pw_bay_stock" WHERE '
                    f'{IN_WAREHOUSE} AND $timeFilter GROUP BY "bay", "lot", "sku"',
                    table=True,
                ),
                span=24,
            )
        )
        .with_row(dash.Row("Devices and gateways"))
        .with_panel(
            latest(
                "Gateway state",
                "0 ok, 1 degraded, 2 alarm, 3 offline (the gateway's own health).",
                InfluxQL(
                    f'SELECT last("state") FROM "pw_gateway" WHERE {IN_WAREHOUSE} AND '
                    '$timeFilter GROUP BY time($__interval), "gateway" fill(none)',
                    alias="$tag_gateway",
                ),
                steps=thresholds(GREEN, (1, YELLOW), (2, ORANGE), (3, RED)),
                mappings=_state_names(),
                span=8,
            )
        )
        .with_panel(
            series(
                "Device silence",
                "Seconds since the anchor last received each device's newest event.",
                InfluxQL(
                    f'SELECT last("silent_ms") / 1000 FROM "pw_device" WHERE {IN_WAREHOUSE} '
                    'AND $timeFilter GROUP BY time($__interval), "gateway", "device" fill(none)',
                    alias="$tag_device",
                ),
                unit="s",
                span=16,
            )
        )
        .with_panel(
            rows(
                "Devices",
                "Highest sequence number per device and how far it runs past the gapless "
                "chain (unchained > 0: events missing).",
                InfluxQL(
                    'SELECT last("seq") AS "seq", last("unchained") AS "unchained", '
                    'last("silent_ms") / 1000 AS "silent_s" FROM "pw_device" WHERE '
                    f'{IN_WAREHOUSE} AND $timeFilter GROUP BY "warehouse", "gateway", "device"',
                    table=True,
                ),
                span=24,
            )
        )
    )
