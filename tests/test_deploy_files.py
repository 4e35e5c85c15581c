"""The deployment files in docs/deploy/ stay true to the code.

No container runtime or systemd can run here, so this checks what can be checked without
them: every ``pledgewatch`` command line (compose services, systemd ``ExecStart``) parses with
the real subcommand's own argument parser, and every pledgewatch config file loads with the
real loader (the same validation ``anchor run`` / ``witness run`` do before starting).
"""

from __future__ import annotations

import argparse
import importlib
import shlex
from pathlib import Path

import pytest
import yaml

from anchor import config as anchor_config
from anchor import witness
from anchor.alerts import config as alerts_config
from pledgewatch.cli import COMMANDS

DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy"
BINARY = "/opt/pledgewatch/bin/pledgewatch"


def parse(argv: list[str]) -> argparse.Namespace:
    """``argv`` after ``pledgewatch``, parsed by the subcommand's own parser (not run)."""
    name, rest = argv[0], argv[1:]
    assert name in COMMANDS, f"unknown subcommand {name!r}"
    parser = argparse.ArgumentParser(prog=f"pledgewatch {name}", exit_on_error=False)
    importlib.import_module(COMMANDS[name][0]).add_arguments(parser)
    try:
        return parser.parse_args(rest)
    except SystemExit as exc:  # argparse exits on some errors even with exit_on_error=False
        raise AssertionError(f"pledgewatch {shlex.join(argv)} does not parse") from exc


def compose_commands() -> list[tuple[str, list[str]]]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return [
        (name, [str(a) for a in service["command"]])
        for name, service in compose["services"].items()
        if "build" in service
    ]


def unit_commands() -> list[tuple[str, list[str]]]:
    out = []
    for unit in sorted(DEPLOY.glob("*.service")):
        for line in unit.read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart=").replace("%i", "worker-1"))
                assert argv[0] == BINARY, f"{unit.name}: runs {argv[0]}"
                out.append((unit.name, argv[1:]))
    return out


def test_compose_runs_the_pledgewatch_image_for_anchors_witness_and_api() -> None:
    names = {name: argv[:2] for name, argv in compose_commands()}
    assert names == {
        "anchor-1": ["anchor", "run"],
        "anchor-2": ["anchor", "run"],
        "witness": ["witness", "run"],
        "api": ["api", "run"],
    }


@pytest.mark.parametrize(
    ("where", "argv"), compose_commands() + unit_commands(), ids=lambda v: str(v)[:40]
)
def test_every_command_line_parses_with_the_real_cli(where: str, argv: list[str]) -> None:
    args = parse(argv)
    config = getattr(args, "config", None)
    assert config is not None, f"{where}: no --config"
    assert str(config).startswith("/etc/pledgewatch/"), f"{where}: config {config}"


def test_units_and_compose_name_config_files_that_exist_here() -> None:
    names = {Path(str(parse(argv).config)).name for _, argv in compose_commands()}
    assert names <= {p.name for p in DEPLOY.glob("*.toml")}


@pytest.mark.parametrize("name", ["anchor-1.toml", "anchor-2.toml"])
def test_anchor_configs_load_and_exactly_one_worker_reconciles(name: str) -> None:
    config = anchor_config.load(DEPLOY / name)
    alerting = alerts_config.load(DEPLOY / name)
    assert config.anchor.worker == name.removesuffix(".toml").replace("anchor", "worker")
    assert config.anchor.store.startswith("postgresql://")
    assert config.reconcile.enabled == (name == "anchor-1.toml")
    assert bool(alerting.webhooks) == (name == "anchor-1.toml")
    assert config.metrics is not None


def test_witness_config_loads_and_watches_the_anchors_log() -> None:
    loaded = witness.load_config(DEPLOY / "witness.toml")
    origin = anchor_config.load(DEPLOY / "anchor-1.toml").anchor.origin
    assert list(loaded.logs) == [origin]
