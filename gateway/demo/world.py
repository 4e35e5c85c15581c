"""The demo's warehouse, loan book and the alerts its faults must raise — written as the
files an operator would have: a simulator scenario (TOML) and the three loan-book CSVs.

Time: the simulated month *ends now* (the minute the demo starts), so every event is in the
past and the anchor's live reconciler, which evaluates at the wall clock, sees the month's
final state at "now". It is 28 days long, so a device's first event is never more than the
30 days the reconciler's silence threshold allows during the replay (``gateway.demo.configs``).

Faults and what they must raise (``anchor.reconcile.rules`` defines each rule):

- theft of 18 units of lot ``wr-0001`` (pledged to LN-1) on day 9, no release token:
  UNAUTHORIZED_RELEASE for that unload and SHORTFALL of the lot (LN-1 stays above its warning
  line, so no coverage alert);
- a slow drain of bay ``a2`` (the warehouse's own soybeans, pledged to nobody) over two days:
  the load cell reads 400 kg under the book for the rest of the month: WEIGHT_MISMATCH;
- load cell ``cell-c2`` goes silent for the last three days (heartbeats too): DEVICE_SILENT
  for that device (its gateway's other devices still beat);
- lot ``wr-0003`` pledged to LN-3 and to LN-4, whose periods overlap: DOUBLE_PLEDGE.

LN-2 is clean, and no alert may name it (nor LN-3 or LN-4 beyond the double pledge).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

WAREHOUSE = "wh-demo"
GATEWAYS = ("gw-a", "gw-b", "gw-c")
DAYS = 28
UNIT_GRAMS = {"steel-coil-2mm": 25_000, "copper-cathode": 12_500, "soybeans-bag-50kg": 50_000}
THEFT_LOAN = "LN-1"
LOTS = (  # id, SKU, bay, qty, pledged: the stock at the start of the month
    ("wr-0001", "copper-cathode", "a1", 120, True),
    ("own-0005", "soybeans-bag-50kg", "a2", 30, False),
    ("wr-0002", "steel-coil-2mm", "b1", 80, True),
    ("wr-0003", "soybeans-bag-50kg", "c1", 60, True),
    ("wr-0004", "steel-coil-2mm", "c2", 40, True),
)


@dataclass(frozen=True, slots=True)
class Expected:
    """One alert the demo must see: its rule and the subject that names what it is about."""

    rule: str
    subject: str
    cause: str


EXPECTED = (
    Expected("UNAUTHORIZED_RELEASE", "unload:", "theft"),
    Expected("SHORTFALL", "lot:wr-0001", "theft"),
    Expected("WEIGHT_MISMATCH", "bay:a2", "slow drain"),
    Expected("DEVICE_SILENT", "device:gw-c/cell-c2", "silent sensor"),
    Expected("DOUBLE_PLEDGE", "lot:wr-0003", "double pledge"),
)


@dataclass(frozen=True, slots=True)
class World:
    start: dt.datetime  # UTC, whole minute
    end: dt.datetime  # start + DAYS days: the minute the demo started

    @classmethod
    def ending(cls, now: dt.datetime) -> World:
        end = now.astimezone(dt.UTC).replace(second=0, microsecond=0)
        return cls(end - dt.timedelta(days=DAYS), end)

    @property
    def start_ms(self) -> int:
        return int(self.start.timestamp()) * 1000

    @property
    def duration_ms(self) -> int:
        return DAYS * 86_400_000

    def write(self, folder: Path) -> tuple[Path, Path, Path, Path]:
        """scenario.toml, loans.csv, pledges.csv, prices.csv in ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = tuple(
            folder / name for name in ("scenario.toml", "loans.csv", "pledges.csv", "prices.csv")
        )
        texts = (self.scenario(), self.loans(), self.pledges(), self.prices())
        for path, text in zip(paths, texts, strict=True):
            path.write_text(text, encoding="utf-8")
        return paths[0], paths[1], paths[2], paths[3]

    def scenario(self) -> str:
        lines = [
            "# Written by `pledgewatch demo`: one warehouse, three gateways, 15 devices, the",
            f"# {DAYS} days that end when the demo started, with four injected faults.",
            "seed = 2026",
            f'start = "{self.start.strftime("%Y-%m-%dT%H:%M:%SZ")}"',
            f'duration = "{DAYS}d"',
            f'warehouse = "{WAREHOUSE}"',
            "",
            "[traffic]",
            "arrivals_per_day = 3",
            "departures_per_day = 0  # every departure of a pledged lot would need a bank token",
            "pallet_qty_min = 4",
            "pallet_qty_max = 16",
            'door_open = "4m"',
            'stocktake_interval = "24h"',
            "",
            "[load_cells]",
            'interval = "1h"',
            "",
        ]
        for sku, grams in UNIT_GRAMS.items():
            lines += ["[[skus]]", f'id = "{sku}"', f"unit_grams = {grams}", ""]
        for gateway in GATEWAYS:
            x = gateway[-1]
            for bay in (f"{x}1", f"{x}2"):
                lines += ["[[bays]]", f'id = "{bay}"', f'gateway = "{gateway}"', ""]
        for gateway in GATEWAYS:
            x = gateway[-1]
            lines += ["[[gateways]]", f'id = "{gateway}"', 'heartbeat = "3h"', ""]
            devices = [
                (f"portal-in-{x}", "rfid-in", None),
                (f"portal-out-{x}", "rfid-out", None),
                (f"door-{x}", "door", f"dock-{x}"),
                (f"cell-{x}1", "load-cell", f"{x}1"),
                (f"cell-{x}2", "load-cell", f"{x}2"),
            ]
            for device, kind, where in devices:
                lines += ["[[gateways.devices]]", f'id = "{device}"', f'type = "{kind}"']
                lines += [f'bay = "{where}"'] if where else []
                lines.append("")
        for lot, sku, bay, qty, pledged in LOTS:
            lines += [
                "[[lots]]",
                f'id = "{lot}"',
                f'sku = "{sku}"',
                f'bay = "{bay}"',
                f"qty = {qty}",
                f"pledged = {'true' if pledged else 'false'}",
                "",
            ]
        lines += [
            "[[faults]]",
            'kind = "theft"',
            'at = "9d"',
            'lot = "wr-0001"',
            "qty = 18",
            "",
            "[[faults]]",
            'kind = "slow-drain"',
            'at = "14d"',
            'for = "2d"',
            'bay = "a2"',
            "grams = 400_000",
            "",
            "[[faults]]",
            'kind = "dropout"',
            f'at = "{DAYS - 3}d"',
            'for = "10d"  # clipped to the end: silent until now',
            'device = "cell-c2"',
            "",
        ]
        return "\n".join(lines)

    def loans(self) -> str:
        first = self.start.date() - dt.timedelta(days=5)
        last = self.end.date() + dt.timedelta(days=180)
        ln4 = self.start.date() + dt.timedelta(days=10)
        head = (
            "loan_id,borrower,warehouse_id,currency,outstanding,start,end,pledge_type,"
            "advance_rate,warning_ratio,liquidation_ratio,min_value"
        )
        rows = [
            f"LN-1,Jinhai Copper Trading Co.,{WAREHOUSE},CNY,500000.00,{first},{last},"
            "static,0.70,1.30,1.10,0.00",
            f"LN-2,Harbour Steel Ltd.,{WAREHOUSE},CNY,30000.00,{first},{last},"
            "static,0.70,1.30,1.10,0.00",
            f"LN-3,Eastern Grain Supply,{WAREHOUSE},CNY,12000.00,{first},{last},"
            "static,0.60,1.30,1.10,0.00",
            f"LN-4,Northern Grain Import,{WAREHOUSE},CNY,25000.00,{ln4},{last},"
            "static,0.60,1.30,1.10,0.00",
        ]
        return "\n".join([head, *rows, ""])

    def pledges(self) -> str:
        rows = [
            "LN-1,wr-0001,copper-cathode,120",
            "LN-2,wr-0002,steel-coil-2mm,80",
            "LN-3,wr-0003,soybeans-bag-50kg,60",
            "LN-4,wr-0003,soybeans-bag-50kg,60",
            "LN-4,wr-0004,steel-coil-2mm,40",
        ]
        return "\n".join(["loan_id,lot,sku,qty", *rows, ""])

    def prices(self) -> str:
        day = self.start.date() - dt.timedelta(days=5)
        rows = [
            f"copper-cathode,{day},9000.00",
            f"steel-coil-2mm,{day},700.00",
            f"soybeans-bag-50kg,{day},400.00",
        ]
        return "\n".join(["sku,date,unit_price", *rows, ""])
