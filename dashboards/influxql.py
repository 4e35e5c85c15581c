"""InfluxQL targets, the data source reference and the template variables every board uses.

grafana-foundation-sdk has no InfluxDB query model, so `InfluxQLQuery` is one: a raw InfluxQL
target as Grafana's InfluxDB data source stores it (`rawQuery: true`, `query`, `resultFormat`,
optional `alias`). Raw InfluxQL (not Flux, not SQL) because it is the one language InfluxDB
1.x, 2.x (through a DBRP mapping) and 3.x all answer.

Queries use Grafana's macros: `$timeFilter` (the time range, `time >= … and time <= …`),
`$__interval` (bucket width from range ÷ width) and the template variables, which Grafana
turns into a regex group for multi-value/All selections — so they are always matched with
`=~ /^$name$/`.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog import builder, variants
from grafana_foundation_sdk.models import dashboard as model

DATASOURCE_VARIABLE = "datasource"
DATASOURCE = model.DataSourceRef(type_val="influxdb", uid="${" + DATASOURCE_VARIABLE + "}")
# The uid the provisioning file gives the data source, and the variable's default.
PROVISIONED_UID = "pledgewatch-influxdb"
PROVISIONED_NAME = "pledgewatch InfluxDB"


class InfluxQLQuery(variants.Dataquery):
    """One raw InfluxQL target; `to_json` is what the SDK's encoder writes."""

    def __init__(self, ref_id: str, query: str, *, table: bool, alias: str | None) -> None:
        self.ref_id = ref_id
        self.query = query
        self.table = table
        self.alias = alias

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "datasource": DATASOURCE.to_json(),
            "query": self.query,
            "rawQuery": True,
            "refId": self.ref_id,
            "resultFormat": "table" if self.table else "time_series",
        }
        if self.alias is not None:
            data["alias"] = self.alias
        return data


class InfluxQL(builder.Builder[variants.Dataquery]):
    """Builder for `InfluxQLQuery`, so panels take it like any SDK target."""

    def __init__(
        self, query: str, *, ref_id: str = "A", table: bool = False, alias: str | None = None
    ) -> None:
        self._query = InfluxQLQuery(ref_id, query, table=table, alias=alias)

    def build(self) -> InfluxQLQuery:
        return self._query


def datasource_variable() -> dash.DatasourceVariable:
    """`$datasource`: any InfluxDB (InfluxQL) data source, defaulting to the provisioned one."""
    return (
        dash.DatasourceVariable(DATASOURCE_VARIABLE)
        .label("InfluxDB")
        .type("influxdb")
        .current(model.VariableOption(selected=True, text=PROVISIONED_NAME, value=PROVISIONED_UID))
    )


def tag_variable(
    name: str, label: str, measurement: str, *, where: str | None = None
) -> dash.QueryVariable:
    """A multi-value tag picker (All included) filled by `SHOW TAG VALUES`, refreshed when the
    time range changes so loans that ended drop out."""
    query = f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "{name}"'
    if where is not None:
        query += f" WHERE {where}"
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def matches(tag: str, variable: str | None = None) -> str:
    """`"tag" =~ /^$variable$/`: the filter for a multi-value variable (Grafana's regex form)."""
    return f'"{tag}" =~ /^${variable or tag}$/'
