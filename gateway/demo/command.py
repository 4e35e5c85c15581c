"""``pledgewatch demo`` arguments and exit codes: 0 everything matched, 1 a check failed or
a step failed, 2 bad arguments (an ``--out`` folder that is not empty, an unknown broker)."""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path
from typing import TextIO

from gateway.demo.brokers import BROKERS
from gateway.demo.errors import DemoError, DemoFailed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder, must be new or empty (default: a fresh ./demo-out/run-<UTC time>)",
    )
    parser.add_argument(
        "--broker",
        choices=BROKERS,
        default="auto",
        help="auto (default): Mosquitto if it is on PATH, else amqtt in-process",
    )


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from gateway.demo.run import run_demo  # the demo's imports only when it runs

    folder: Path = args.out or Path("demo-out") / f"run-{dt.datetime.now(dt.UTC):%Y%m%d-%H%M%S}"
    try:
        folder = folder.resolve()
        if folder.exists() and any(folder.iterdir()):
            raise DemoError(f"--out {folder}: not empty; give a new or empty folder")
        folder.mkdir(parents=True, exist_ok=True)
        return run_demo(out, folder, args.broker)
    except DemoError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except DemoFailed as exc:
        print(f"error: {exc}", file=err)
        return 1
    except KeyboardInterrupt:
        print("interrupted: every child process was stopped", file=err)
        return 1
