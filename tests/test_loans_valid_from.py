"""`pledgewatch loans import --valid-from DAY`: a book for loans already running when
monitoring starts (the demo's month), in force from 00:00 UTC of that day, never before the
latest version."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from anchor.loans import list_versions
from anchor.store.db import Database

from anchor_rig import cli


def book(folder: Path) -> list[str]:
    (folder / "loans.csv").write_text(
        "loan_id,borrower,warehouse_id,currency,outstanding,start,end,pledge_type,"
        "advance_rate,warning_ratio,liquidation_ratio,min_value\n"
        "LN-1,Acme Steel,wh-1,USD,10000.00,2026-01-01,2026-12-31,static,0.70,1.50,1.20,0\n"
    )
    (folder / "pledges.csv").write_text("loan_id,lot,sku,qty\nLN-1,WR-1,steel-coil,40\n")
    (folder / "prices.csv").write_text("sku,date,unit_price\nsteel-coil,2026-01-01,1000.00\n")
    return [
        *("--loans", str(folder / "loans.csv"), "--pledges", str(folder / "pledges.csv")),
        *("--prices", str(folder / "prices.csv")),
    ]


def versions(folder: Path) -> list[tuple[int, int]]:
    db = Database(f"sqlite:///{folder / 'anchor.db'}")
    db.open()
    try:
        return [(v.version, v.valid_from_ms) for v in list_versions(db)]
    finally:
        db.close()


def test_valid_from_backdates_the_book_but_never_before_the_latest_version(
    tmp_path: Path,
) -> None:
    config = tmp_path / "anchor.toml"
    config.write_text(
        '[anchor]\norigin = "t/log"\nkey_file = "anchor.key"\nstore = "sqlite:anchor.db"\n'
        '\n[mqtt]\nhost = "127.0.0.1"\n'
    )
    files = book(tmp_path)
    cli("loans", "import", "--config", str(config), *files, "--valid-from", "2026-03-01")
    march = int(dt.datetime(2026, 3, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert versions(tmp_path) == [(1, march)]

    earlier = cli(
        "loans", "import", "--config", str(config), *files, "--valid-from", "2026-02-01",
        check=False,
    )  # fmt: skip
    assert earlier.returncode == 1
    assert "before version 1" in earlier.stderr
    assert versions(tmp_path) == [(1, march)]  # nothing stored

    bad = cli(
        "loans", "import", "--config", str(config), *files, "--valid-from", "01/03/2026",
        check=False,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "want a date like 2026-03-01" in bad.stderr

    cli("loans", "import", "--config", str(config), *files)  # default: now
    (_, first), (second, now_ms) = versions(tmp_path)
    assert second == 2 and now_ms > first
