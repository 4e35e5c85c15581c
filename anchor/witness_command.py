"""``pledgewatch witness keygen | run | show``: the bank's witness from the command line.

Exit codes: 0 success, 1 runtime failure, 2 bad configuration or key (nothing was started).
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import TextIO

from anchor import keyfile
from anchor.errors import AnchorError, ConfigError
from anchor.witness import LogState, Witness, WitnessServer, WitnessState, load_config
from pledgewatch.checkpoint import NoteVerifier, b64encode, check_key_name
from pledgewatch.errors import PledgewatchError, ValidationError
from pledgewatch.process import handle_signals

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="witness_command", required=True)
    keygen = sub.add_parser("keygen", help="create the witness's Ed25519 key (mode 0600)")
    keygen.add_argument("--key", type=Path, required=True, help="where to write the key")
    keygen.add_argument("--name", required=True, help="witness name, e.g. bank.example/witness")
    keygen.add_argument("--force", action="store_true", help="replace an existing key")
    run = sub.add_parser("run", help="serve POST /add-checkpoint until SIGTERM/SIGINT")
    run.add_argument("--config", type=Path, required=True)
    show = sub.add_parser("show", help="the witness's vkey and the size it holds per log")
    show.add_argument("--config", type=Path, required=True)


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    handlers = {"keygen": _keygen, "run": _run, "show": _show}
    try:
        return handlers[args.witness_command](args, out)
    except (ConfigError, keyfile.KeyFileError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError, OSError) as exc:
        print(f"error: {exc}", file=err)
        return 1


def _describe(name: str, public_key: bytes, key_id: str, out: TextIO) -> None:
    verifier = NoteVerifier.cosignature_v1(name, public_key)
    print(f"name:       {name}", file=out)
    print(f"key id:     {key_id}", file=out)
    print(f"public key: {public_key.hex()}", file=out)
    print(f"key hash:   {verifier.key_hash.hex()}", file=out)
    print(f"vkey:       {verifier.vkey()}", file=out)


def _keygen(args: argparse.Namespace, out: TextIO) -> int:
    try:
        check_key_name(args.name)
    except ValidationError as exc:
        raise ConfigError("--name", [str(exc)]) from None
    key = keyfile.generate(args.key, overwrite=args.force, what="witness key")
    print(f"key file:   {args.key}", file=out)
    _describe(args.name, key.public_key, key.key_id, out)
    print("Give the name and public key (or the vkey) to the anchor's [witness] section.", file=out)
    return 0


def _run(args: argparse.Namespace, out: TextIO) -> int:
    config = load_config(args.config)
    key = keyfile.load(config.key_file, what="witness key")
    state = WitnessState.open(config.state_db)
    try:
        witness = Witness(config.name, key, config.logs, state)
        server = WitnessServer((config.host, config.port), witness, config.max_body_bytes)
    except BaseException:
        state.close()
        raise
    stop = threading.Event()
    handle_signals(stop)
    thread = threading.Thread(target=server.serve_forever, name="witness-http", daemon=True)
    thread.start()
    vkey = NoteVerifier.cosignature_v1(config.name, key.public_key).vkey()
    log.info("witness listening on %s (vkey %s, %d log(s))", server.url, vkey, len(config.logs))
    print(f"witness listening on {server.url}", file=out, flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        state.close()
        log.info("witness stopped")
    return 0


def _show(args: argparse.Namespace, out: TextIO) -> int:
    config = load_config(args.config)
    key = keyfile.load(config.key_file, what="witness key")
    _describe(config.name, key.public_key, key.key_id, out)
    state = WitnessState.open(config.state_db)
    try:
        held = state.logs()
        refusals = state.refusal_count()
    finally:
        state.close()
    for origin in config.logs:
        found = held.get(origin)
        text = "never cosigned" if found is None else _held(*found)
        print(f"log {origin}: {text}", file=out)
    print(f"refusals kept as evidence: {refusals}", file=out)
    return 0


def _held(state: LogState, updated_ms: int) -> str:
    return f"size {state.size}, root {b64encode(state.root)}, updated at {updated_ms} ms"
