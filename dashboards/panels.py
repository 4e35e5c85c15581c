"""Panel shapes the four boards share: every panel reads the `$datasource` InfluxDB and takes
raw InfluxQL targets (see `influxql`). Layout is the SDK's: panels flow left to right in a
24-column grid, `span` columns wide and `height` rows high.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, stat, table, timeseries
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import dashboard as model

from dashboards.influxql import DATASOURCE, InfluxQL

GREEN, YELLOW, ORANGE, RED = "green", "yellow", "orange", "red"


def thresholds(base: str, *steps: tuple[float, str]) -> dash.ThresholdsConfig:
    """Absolute thresholds: `base` colour below the first step, then each (value, colour)."""
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(None, base), *(model.Threshold(v, c) for v, c in steps)])
    )


def series(
    title: str, description: str, *targets: InfluxQL, unit: str = "short", span: int = 12
) -> timeseries.Panel:
    """A time series panel; series are named by the targets' aliases (`$tag_…`)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(span)
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def latest(
    title: str,
    description: str,
    target: InfluxQL,
    *,
    unit: str = "short",
    steps: dash.ThresholdsConfig | None = None,
    mappings: list[model.ValueMapping] | None = None,
    span: int = 6,
) -> stat.Panel:
    """A stat panel showing each series' last non-null value, coloured by `steps`."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(target)
        .unit(unit)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .color_mode(common_model.BigValueColorMode.BACKGROUND)
        .height(5)
        .span(span)
    )
    if steps is not None:
        panel = panel.thresholds(steps)
    if mappings is not None:
        panel = panel.mappings(mappings)
    return panel


def rows(title: str, description: str, target: InfluxQL, *, span: int = 12) -> table.Panel:
    """A table of the target's rows (resultFormat table), one row per tag combination."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(target)
        .height(8)
        .span(span)
    )
