"""Bad files through the real commands: refused with a message naming the problem, exit 2
(bad input or config) or 1 (a failed check, as documented per command), nothing half-applied.

Already covered elsewhere and not repeated here: loan CSV column/type/date/encoding/duplicate
errors (test_loans.py, 50+ cases, also through ``loans import``), a gateway config with missing
keys or no key file (test_gateway_cli.py), witness config problems (test_witness.py), scenario
problems per key (test_sim_scenario.py), tampered and garbage proof files and bad ``verify``
arguments (test_verify_command.py). What is new here: hostile *file contents* no hand-written
case had — integers past Python's 4300-digit ``int()`` limit, hex literals with thousands of
digits, CSV fields past the csv module's limit, non-UTF-8 and non-files — for every command
that reads a file, and the anchor's config through its CLI. Three of these crashed with a
traceback before (see the regression names).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pledgewatch.cli import main

from test_prooffile import GOOD

DATA = Path(__file__).parent / "data" / "loanbook"
HUGE_DECIMAL = "9" * 5000  # int() refuses > 4300 digits with ValueError
HUGE_HEX = "0x" + "f" * 5000  # TOML reads it (no digit limit for hex); str() of it fails


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pledgewatch.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---- config files of the three long-running commands ----------------------------------------

GATEWAY = """[gateway]
id = "gw-1"
warehouse = "wh-1"
key_file = "gw.key"
state_db = "gw.db"

[anchor]
public_key = "{hex}"

[mqtt]
host = "127.0.0.1"
port = 1883
"""
ANCHOR = """[anchor]
origin = "bank.example/test"
key_file = "anchor.key"
store = "sqlite:anchor.db"

[mqtt]
host = "127.0.0.1"
port = 1883
"""
WITNESS = """[witness]
name = "witness.bank.example"
key_file = "witness.key"
state_db = "witness.db"

[listen]
host = "127.0.0.1"
port = 1883

[[logs]]
origin = "bank.example/test"
public_key = "{hex}"
"""
# command, config text, the file a started command would create, the port's key path
COMMANDS = {
    "gateway": (["gateway", "run"], GATEWAY.format(hex="ab" * 32), "gw.db", "mqtt.port"),
    "anchor": (["anchor", "run"], ANCHOR, "anchor.db", "mqtt.port"),
    "witness": (["witness", "run"], WITNESS.format(hex="ab" * 32), "witness.db", "listen.port"),
}


def refused(tmp_path: Path, which: str, text: str | bytes) -> subprocess.CompletedProcess[str]:
    argv, _, created, _ = COMMANDS[which]
    config = tmp_path / f"{which}.toml"
    if isinstance(text, bytes):
        config.write_bytes(text)
    else:
        config.write_text(text, encoding="utf-8")
    result = cli(*argv, "--config", str(config))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / created).exists(), f"{which} created {created} from a bad config"
    return result


@pytest.mark.parametrize("which", sorted(COMMANDS))
def test_regression_a_5000_digit_integer_in_a_config_crashed_with_a_traceback(
    tmp_path: Path, which: str
) -> None:
    text = COMMANDS[which][1].replace("port = 1883", f"port = {HUGE_DECIMAL}")
    result = refused(tmp_path, which, text)
    assert f"{which}.toml" in result.stderr and "TOML" in result.stderr


@pytest.mark.parametrize("which", sorted(COMMANDS))
def test_regression_a_huge_hex_integer_in_a_config_crashed_while_being_reported(
    tmp_path: Path, which: str
) -> None:
    text = COMMANDS[which][1].replace("port = 1883", f"port = {HUGE_HEX}")
    result = refused(tmp_path, which, text)
    assert f"{COMMANDS[which][3]}: got a 20000-bit integer" in result.stderr, result.stderr


BROKEN: dict[str, Callable[[str], str | bytes]] = {
    "not_utf8": lambda text: text.encode() + b'\nextra = "\xff\xfe"\n',
    "not_toml": lambda text: text + "\nthis is = = not toml\n",
    "unknown_key": lambda text: text.replace("[mqtt]", "[mqtt]\nprot = 1"),
    "wrong_type": lambda text: text.replace('host = "127.0.0.1"', "host = 127"),
    "key_twice": lambda text: text + '\n[anchor]\norigin = "again"\n',
    "empty": lambda text: "",
}
WANT = {
    "not_utf8": "not valid TOML: not UTF-8 (byte 0xff at offset",
    "not_toml": "not valid TOML",
    "unknown_key": "mqtt.prot: unknown key",
    "wrong_type": "mqtt.host: got 127 (int), want a string",
    "key_twice": "not valid TOML",
    "empty": "- anchor: missing table [anchor]",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_anchor_configs_are_named_and_start_nothing(tmp_path: Path, case: str) -> None:
    result = refused(tmp_path, "anchor", BROKEN[case](ANCHOR))
    assert WANT[case] in result.stderr, result.stderr


@pytest.mark.parametrize("which", ["gateway", "witness"])
def test_typos_and_wrong_types_in_gateway_and_witness_configs_are_all_named_at_once(
    tmp_path: Path, which: str
) -> None:
    table = COMMANDS[which][3].split(".")[0]  # the table holding host and port
    text = COMMANDS[which][1].replace(f"[{table}]", f"[{table}]\nprot = 1")
    text = text.replace('host = "127.0.0.1"', "host = 127")
    result = refused(tmp_path, which, text)
    assert f"{table}.prot: unknown key" in result.stderr, result.stderr
    assert f"{table}.host: got 127 (int), want a string" in result.stderr, result.stderr


def test_a_config_that_is_a_directory_or_missing_is_named(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    for name in ("dir.toml", "missing.toml"):
        for argv, *_ in COMMANDS.values():
            result = cli(*argv, "--config", str(tmp_path / name))
            assert result.returncode == 2, (argv, result.stderr)
            assert f"{name}: cannot read" in result.stderr, (argv, result.stderr)


def test_regression_a_missing_anchor_key_exited_1_after_creating_the_store(
    tmp_path: Path,
) -> None:
    result = refused(tmp_path, "anchor", ANCHOR)  # anchor.key was never created
    assert "cannot read key" in result.stderr and "anchor.key" in result.stderr, result.stderr


# ---- loan CSVs --------------------------------------------------------------------------------


def loan_book(tmp_path: Path) -> tuple[str, list[str]]:
    shutil.copytree(DATA, tmp_path / "book")
    config = tmp_path / "anchor.toml"
    config.write_text(ANCHOR, encoding="utf-8")
    files = [f"--{n}" for n in ("loans", "pledges", "prices")]
    paths = [str(tmp_path / "book" / f"{n}.csv") for n in ("loans", "pledges", "prices")]
    return str(config), [x for pair in zip(files, paths, strict=True) for x in pair]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(
    ("file", "old", "new", "want"),
    [
        (
            "pledges.csv",
            "steel-coil,40",
            "steel-coil," + "4" * 5000,
            "pledges.csv:2: column qty: got '444",
        ),
        (
            "pledges.csv",
            "steel-coil,40",
            "steel-coil,9007199254740992",
            "pledges.csv:2: column qty: got '9007199254740992', want a whole number up to",
        ),
        ("pledges.csv", "steel-coil,40", "steel-coil," + "4" * 200_000, "pledges.csv:2: not valid"),
        ("loans.csv", "2026-01-01", "2026-01-01\x00", "loans.csv:2: column start"),
    ],
    ids=["qty_5000_digits", "qty_above_2**53", "field_past_csv_limit", "nul_in_a_date"],
)
def test_regression_hostile_loan_csv_cells_are_named_and_nothing_is_imported(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    file: str,
    old: str,
    new: str,
    want: str,
) -> None:
    """qty_5000_digits crashed ``loans import`` with int()'s ValueError before."""
    config, files = loan_book(tmp_path)
    edit(tmp_path / "book" / file, old, new)
    code, out, err = run_main(capsys, "loans", "import", "--config", config, *files)
    assert code == 1 and out == ""  # docs/loanbook.md: import problems exit 1, all printed
    assert want in err, err[:2000]
    code, _, err = run_main(capsys, "loans", "list", "--config", config)
    assert code == 1 and "no loan book yet" in err  # nothing was imported


def test_a_loan_csv_that_is_a_directory_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, files = loan_book(tmp_path)
    prices = tmp_path / "book" / "prices.csv"
    prices.unlink()
    prices.mkdir()
    code, _, err = run_main(capsys, "loans", "import", "--config", config, *files)
    assert code == 1 and "prices.csv: cannot read" in err, err


# ---- proof files ------------------------------------------------------------------------------


def verify(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str, str]:
    return run_main(capsys, "verify", str(path), "--anchor-key", "00" * 32)


def _with(**fields: object) -> bytes:
    value = json.loads(GOOD)
    value.update(fields)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def _huge_leaf_index() -> bytes:
    huge = b'"leaf_index":' + HUGE_DECIMAL.encode()
    return re.sub(rb'"leaf_index":[0-9]+', huge, GOOD, count=1)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("truncated", lambda: GOOD[: len(GOOD) // 2]),
        ("wrong_version", lambda: GOOD.replace(b'"v":1}', b'"v":2}')),
        ("empty", lambda: b""),
        ("huge_leaf_index", lambda: _with(leaf_index=int(HUGE_DECIMAL[:300]))),
        ("leaf_index_5000_digits", _huge_leaf_index),
        ("utf16", lambda: GOOD.decode().encode("utf-16")),
    ],
)
def test_bad_proof_files_fail_the_format_check_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, make: Callable[[], bytes]
) -> None:
    path = tmp_path / "proof.json"
    path.write_bytes(make())
    code, out, err = verify(capsys, path)
    assert code == 1, (out, err)
    assert out.startswith("format                FAILED: "), out


def test_a_proof_path_that_is_a_directory_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = verify(capsys, tmp_path)
    assert code == 2 and out == ""
    assert "cannot read" in err, err


# ---- scenario files ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "want"),
    [
        (b"seed = " + HUGE_DECIMAL.encode() + b"\n", "scenario.toml: not usable TOML"),
        (b"seed = " + HUGE_HEX.encode() + b"\n", "seed: got a 20000-bit integer"),
        (b"name = '\xff'\n", "scenario.toml: not valid TOML: not UTF-8 (byte 0xff at offset 8)"),
        (b"[scenario\n", "scenario.toml: not valid TOML"),
        (b"\x00\x01\x02", "scenario.toml: not valid TOML"),
    ],
    ids=["int_5000_digits", "hex_5000_digits", "not_utf8", "not_toml", "binary"],
)
def test_bad_scenario_files_exit_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, want: str
) -> None:
    path = tmp_path / "scenario.toml"
    path.write_bytes(content)
    code, out, err = run_main(capsys, "simulate", "--scenario", str(path))
    assert code == 2 and out == "", (out, err)
    assert want in err, err


# ---- key registry commands --------------------------------------------------------------------

PUBLIC = "ab" * 32


@pytest.mark.parametrize(
    ("args", "want"),
    [
        (["enrol", "--warehouse", "WH 1", "--gateway", "gw-1"], "--warehouse: got 'WH 1'"),
        (["enrol", "--warehouse", "wh-1", "--gateway=-gw"], "--gateway: got '-gw'"),
        (
            ["enrol", "--warehouse", "wh-1", "--gateway", "gw-1", "--valid-from-ms", "9" * 23],
            "--valid-from-ms: got a 77-bit integer, want milliseconds 0..2**53-1",
        ),
        (
            ["enrol", "--warehouse", "wh-1", "--gateway", "gw-1", "--valid-from-ms", "-5"],
            "--valid-from-ms: got -5",
        ),
        (["revoke", "--key-id", "0" * 32, "--at-ms", str(2**53)], "--at-ms: got 9007199254740992"),
    ],
    ids=["bad_warehouse", "bad_gateway", "huge_valid_from", "negative_valid_from", "huge_at_ms"],
)
def test_regression_bad_enrol_and_revoke_arguments_exit_2_and_log_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], want: str
) -> None:
    """An invalid id went into the append-only log as a key leaf (which readers of the log
    then refuse to parse); a huge --valid-from-ms crashed with SQLite's OverflowError."""
    config = tmp_path / "anchor.toml"
    config.write_text(ANCHOR, encoding="utf-8")
    assert run_main(capsys, "anchor", "init", "--config", str(config))[0] == 0
    extra = ["--public-key", PUBLIC] if args[0] == "enrol" else []
    code, out, err = run_main(capsys, "anchor", *args, *extra, "--config", str(config))
    assert code == 2 and out == "", (out, err)
    assert want in err, err
    code, out, _ = run_main(capsys, "anchor", "keys", "--json", "--config", str(config))
    assert code == 0 and json.loads(out) == []
