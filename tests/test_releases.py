"""The bank's release tokens: issued against the loan book, verified with the core's parser.

Library tests run on SQLite and PostgreSQL (``store_url``); the command-line tests run
``pledgewatch release`` in process on SQLite with a real key file.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from anchor import keyfile
from anchor.loans import import_csv
from anchor.releases import ReleaseError, issue, list_issued, list_tokens, release_id
from anchor.store.db import Database
from pledgewatch.cli import main
from pledgewatch.errors import SignatureError
from pledgewatch.release import parse_token
from pledgewatch.signing import SigningKey

from store_rig import open_store

GOLDEN = Path(__file__).parent / "data" / "loanbook"
T0 = 1_769_904_000_000  # 2026-02-01T00:00:00Z: every golden loan is in force
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
WH = "wh-1"


@pytest.fixture
def db(store_url: str) -> Iterator[Database]:
    database = open_store(store_url)
    import_csv(
        database, GOLDEN / "loans.csv", GOLDEN / "pledges.csv", GOLDEN / "prices.csv", now_ms=T0
    )
    yield database
    database.close()


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


def issue_one(db: Database, key: SigningKey, **changes: object) -> bytes:
    request: dict[str, object] = {
        "warehouse": WH,
        "loan_id": "L-2026-001",
        "lot": "WR-1001",
        "qty": 10,
        "until_ms": T0 + 48 * HOUR_MS,
        "now_ms": T0 + HOUR_MS,
    }
    request.update(changes)
    return issue(db, key, **request)  # type: ignore[arg-type]


def test_issue_and_verify_round_trip(db: Database, key: SigningKey) -> None:
    wire = issue_one(db, key)
    token = parse_token(wire, key.public_key)
    assert token.id == release_id("L-2026-001", "WR-1001", T0 + HOUR_MS, 1)
    assert token.id.startswith("rel-") and len(token.id) == 24
    assert (token.warehouse, token.loan_id, token.lot, token.qty) == (
        WH,
        "L-2026-001",
        "WR-1001",
        10,
    )
    assert (token.issued_ms, token.expires_ms) == (T0 + HOUR_MS, T0 + 48 * HOUR_MS)
    assert list_tokens(db) == [wire]
    [issued] = list_issued(db)
    assert (issued.seq, issued.book_version, issued.token) == (1, 1, token)
    with pytest.raises(SignatureError):
        parse_token(wire, SigningKey.generate().public_key)


def test_ids_are_unique_even_for_identical_requests(db: Database, key: SigningKey) -> None:
    first = parse_token(issue_one(db, key, qty=5), key.public_key)
    second = parse_token(issue_one(db, key, qty=5), key.public_key)
    assert first.id != second.id
    assert [t.token.id for t in list_issued(db)] == [first.id, second.id]


def test_a_double_pledged_lot_can_be_released_by_either_loan(db: Database, key: SigningKey) -> None:
    for loan_id in ("L-2026-001", "L-2026-003"):
        token = parse_token(issue_one(db, key, loan_id=loan_id, lot="WR-1002"), key.public_key)
        assert token.loan_id == loan_id


REFUSED = [
    ("lot_not_pledged", {"lot": "WR-9999"}, "does not pledge lot 'WR-9999'"),
    ("lot_of_another_loan", {"loan_id": "L-2026-003"}, "L-2026-003 does not pledge lot 'WR-1001'"),
    ("dynamic_loan_names_no_lots", {"loan_id": "L-2026-002"}, "does not pledge lot"),
    ("qty_above_pledged", {"qty": 41}, "qty 41 is more than the 40 units of lot WR-1001"),
    ("qty_zero", {"qty": 0}, "qty: got 0, want at least 1"),
    ("expired_until", {"until_ms": T0 + HOUR_MS}, "until 2026-02-01T01:00:00Z is not after now"),
    ("until_in_the_past", {"until_ms": T0 - HOUR_MS}, "is not after now"),
    ("unknown_loan", {"loan_id": "L-404"}, "loan 'L-404' is not in loan book version 1"),
    ("wrong_warehouse", {"warehouse": "wh-2"}, "is in warehouse wh-1, not wh-2"),
    ("before_the_first_book", {"now_ms": T0 - 1}, "no loan book is in force at 2026-01-31"),
]


@pytest.mark.parametrize(("changes", "want"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_refused_requests_store_nothing(
    db: Database, key: SigningKey, changes: dict[str, object], want: str
) -> None:
    with pytest.raises(ReleaseError) as info:
        issue_one(db, key, **changes)
    assert any(want in problem for problem in info.value.problems), info.value.problems
    assert list_tokens(db) == []


def test_a_loan_out_of_force_is_refused(store_url: str, key: SigningKey) -> None:
    db = open_store(store_url)
    try:
        jan_1 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
        import_csv(
            db, GOLDEN / "loans.csv", GOLDEN / "pledges.csv", GOLDEN / "prices.csv", now_ms=jan_1
        )
        jan_10 = jan_1 + 9 * DAY_MS
        before_start = r"L-2026-003 is not in force on 2026-01-10 \(2026-01-15 to 2026-09-30\)"
        with pytest.raises(ReleaseError, match=before_start):
            issue_one(db, key, loan_id="L-2026-003", lot="WR-1002", now_ms=jan_10)
        new_year = 1_798_761_600_000  # 2027-01-01T00:00:00Z
        with pytest.raises(ReleaseError, match=r"L-2026-001 is not in force on 2027-01-01"):
            issue_one(db, key, now_ms=new_year, until_ms=new_year + HOUR_MS)
        assert list_tokens(db) == []
    finally:
        db.close()


def test_unexpired_tokens_count_against_the_pledged_qty(db: Database, key: SigningKey) -> None:
    first = parse_token(issue_one(db, key, qty=30), key.public_key)
    with pytest.raises(ReleaseError) as info:
        issue_one(db, key, qty=15)
    assert f"qty 15 plus 30 in unexpired tokens {first.id}" in str(info.value)
    assert issue_one(db, key, qty=10)  # 30 + 10 = 40: exactly the pledge
    after_expiry = T0 + 48 * HOUR_MS
    assert issue_one(db, key, qty=40, now_ms=after_expiry, until_ms=after_expiry + HOUR_MS)
    assert len(list_tokens(db)) == 3


# --- the command line ------------------------------------------------------------------------


def write_config(folder: Path) -> Path:
    path = folder / "anchor.toml"
    path.write_text(
        '[anchor]\norigin = "bank.example/test"\nkey_file = "anchor.key"\n'
        'store = "sqlite:anchor.db"\n\n[mqtt]\nhost = "127.0.0.1"\n',
        encoding="utf-8",
    )
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def bank(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, Path, bytes]:
    """A config with a book imported now (loans in force 2000-2099) and a release key."""
    config = str(write_config(tmp_path))
    for name in ("pledges.csv", "prices.csv"):
        shutil.copy(GOLDEN / name, tmp_path / name)
    text = (GOLDEN / "loans.csv").read_text(encoding="utf-8")
    text = text.replace("2026-01-01,2026-12-31", "2000-01-01,2099-12-31")
    (tmp_path / "loans.csv").write_text(text, encoding="utf-8")
    files = [f"--{n}={tmp_path / n}.csv" for n in ("loans", "pledges", "prices")]
    assert run_cli(capsys, "loans", "import", "--config", config, *files)[0] == 0
    key_path = tmp_path / "bank-release.key"
    code, out, _ = run_cli(capsys, "release", "keygen", "--key", str(key_path))
    assert code == 0
    public_hex = next(line.split()[-1] for line in out.splitlines() if line.startswith("public"))
    assert f'[bank] release_public_key = "{public_hex}"' in out
    return config, key_path, bytes.fromhex(public_hex)


def test_cli_issue_prints_the_token_and_list_shows_it(
    bank: tuple[str, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, key_path, public = bank
    args = ["release", "issue", "--config", config, "--key", str(key_path)]
    args += ["--loan", "L-2026-001", "--lot", "WR-1001", "--qty", "12"]
    code, out, err = run_cli(capsys, *args, "--until", "2099-12-31T00:00:00Z")
    assert code == 0
    token = parse_token(out.strip().encode(), public)
    assert (token.qty, token.warehouse) == (12, WH)
    assert token.expires_ms == int(dt.datetime(2099, 12, 31, tzinfo=dt.UTC).timestamp()) * 1000
    assert err.strip() == f"issued release token {token.id}"

    target = tmp_path / "token.json"
    code, out, _ = run_cli(capsys, *args, "--until", "2099-12-31T08:00:00+08:00", "-o", str(target))
    assert code == 0 and out.startswith("issued release token rel-")
    second = parse_token(target.read_bytes().rstrip(b"\n"), public)
    assert second.expires_ms == token.expires_ms

    code, out, _ = run_cli(capsys, "release", "list", "--config", config, "--json")
    listed = json.loads(out)
    assert code == 0 and [row["id"] for row in listed] == [token.id, second.id]
    assert parse_token(listed[0]["wire"].encode(), public) == token
    code, out, _ = run_cli(capsys, "release", "list", "--config", config)
    assert code == 0 and f"{token.id}  loan=L-2026-001  lot=WR-1001  qty=12" in out


def test_cli_exit_codes(
    bank: tuple[str, Path, bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, key_path, _ = bank
    base = ["release", "issue", "--config", config, "--key", str(key_path), "--loan", "L-2026-001"]
    good = ["--lot", "WR-1001", "--qty", "5", "--until", "2099-01-01T00:00:00Z"]

    def code_of(*args: str) -> tuple[int, str]:
        code, _, err = run_cli(capsys, *args)
        return code, err

    assert code_of(*base, *good)[0] == 0
    refused = [
        (["--lot", "WR-9999", "--qty", "5", "--until", "2099-01-01T00:00:00Z"], "does not pledge"),
        (["--lot", "WR-1001", "--qty", "41", "--until", "2099-01-01T00:00:00Z"], "more than"),
        (["--lot", "WR-1001", "--qty", "5", "--until", "2001-01-01T00:00:00Z"], "not after now"),
    ]
    for extra, want in refused:
        code, err = code_of(*base, *extra)
        assert code == 1 and want in err, err
    bad_args = [
        ["--lot", "WR-1001", "--qty", "0", "--until", "2099-01-01T00:00:00Z"],
        ["--lot", "WR-1001", "--qty", "5", "--until", "2099-01-01"],  # no zone
        ["--lot", "WR-1001", "--qty", "5", "--until", "next tuesday"],
    ]
    for extra in bad_args:
        assert code_of(*base, *extra)[0] == 2, extra
    missing_key = ["release", "issue", "--config", config, "--key", str(tmp_path / "nope.key")]
    assert code_of(*missing_key, "--loan", "L-2026-001", *good)[0] == 2
    os.chmod(key_path, 0o644)
    code, err = code_of(*base, *good)
    assert code == 2 and "want 600" in err
    os.chmod(key_path, 0o600)
    with pytest.raises(SystemExit) as exited:  # argparse: --qty must be an integer
        main([*base, "--lot", "WR-1001", "--qty", "five", "--until", "2099-01-01T00:00:00Z"])
    assert exited.value.code == 2
    assert len(json.loads(run_cli(capsys, "release", "list", "--config", config, "--json")[1])) == 1
    assert keyfile.load(key_path)  # the key file is untouched
