"""``pledgewatch api …``: the bank's read API and its tokens (docs/api.md).

- ``api run --config anchor.toml [--listen HOST:PORT]``: serve until SIGTERM/SIGINT;
- ``api token add --user NAME --role viewer|officer --config …``: print a new token once;
- ``api token list --config … [--json]``: tokens (ids, users, roles; never the token);
- ``api token revoke NAME --config …``: revoke every active token of a user.

Exit codes: 0 success, 1 runtime failure (store, unknown user), 2 bad configuration or
arguments (nothing started).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from pathlib import Path
from typing import TextIO

from anchor import keyfile
from anchor.alerts.webhooks import rfc3339
from anchor.api import config as api_config
from anchor.api import tokens
from anchor.api.config import ApiConfig, parse_listen
from anchor.api.server import ApiServer
from anchor.api.service import ApiService, now_ms
from anchor.api.tokens import Role, TokenError
from anchor.errors import AnchorError, ConfigError
from anchor.statement import LogTrust
from anchor.store.db import Database
from anchor.store.schema import open_store
from pledgewatch.errors import PledgewatchError
from pledgewatch.process import handle_signals

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="api_command", required=True)
    serve = sub.add_parser("run", help="serve the read API until SIGTERM/SIGINT")
    serve.add_argument("--config", type=Path, required=True, help="the anchor's config")
    serve.add_argument("--listen", help="HOST:PORT (default: [api] listen, else 127.0.0.1:8080)")
    token = sub.add_parser("token", help="API tokens: add, list, revoke")
    actions = token.add_subparsers(dest="token_command", required=True)
    add = actions.add_parser("add", help="make a token for a user; it is shown once")
    add.add_argument("--user", required=True)
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    listing = actions.add_parser("list", help="tokens, oldest first (hashes are never shown)")
    listing.add_argument("--json", action="store_true")
    revoke = actions.add_parser("revoke", help="revoke every active token of a user")
    revoke.add_argument("user")
    for p in (add, listing, revoke):
        p.add_argument("--config", type=Path, required=True, help="the anchor's config")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        if args.api_command == "run":
            return _run(args, out)
        return _token(args, out)
    except (ConfigError, keyfile.KeyFileError) as exc:
        print(f"error: {exc}", file=err)
        return 2
    except (AnchorError, PledgewatchError) as exc:
        print(f"error: {exc}", file=err)
        return 1
    except OSError as exc:
        print(f"error: cannot listen: {exc}", file=err)
        return 1


def _open(config: ApiConfig) -> Database:
    return open_store(config.anchor.anchor.store)


def _token(args: argparse.Namespace, out: TextIO) -> int:
    config = api_config.load(args.config)
    db = _open(config)
    try:
        action = args.token_command
        if action == "add":
            try:
                tokens.check_user(args.user)
            except TokenError as exc:
                raise ConfigError("--user", [str(exc)]) from None
            made = tokens.add(db, args.user, Role(args.role), now_ms())
            print(made.text, file=out)
            print(
                f"token {made.info.token_id} for {made.info.user} ({made.info.role.value});"
                " shown only now: store it safely",
                file=out,
            )
        elif action == "list":
            _list(tokens.list_tokens(db), args.json, out)
        else:
            count = tokens.revoke(db, args.user, now_ms())
            print(f"revoked {count} token(s) of {args.user}", file=out)
    finally:
        db.close()
    return 0


def _list(found: list[tokens.TokenInfo], as_json: bool, out: TextIO) -> None:
    rows = [
        {
            "token_id": t.token_id,
            "user": t.user,
            "role": t.role.value,
            "created": rfc3339(t.created_ms),
            "revoked": None if t.revoked_ms is None else rfc3339(t.revoked_ms),
        }
        for t in found
    ]
    if as_json:
        print(json.dumps(rows, indent=2), file=out)
        return
    for r in rows:
        state = f"revoked {r['revoked']}" if r["revoked"] else "active"
        print(f"{r['token_id']}  {r['user']:20} {r['role']:8} {r['created']}  {state}", file=out)


def trust_of(config: ApiConfig) -> LogTrust:
    """Whose signatures statement checkpoints must carry: the log key from ``[api]``
    ``log_public_key``, else from the anchor's key file; the witness from ``[witness]``."""
    public = config.api.log_public_key
    if public is None:
        public = keyfile.load(config.anchor.anchor.key_file, what="anchor key").public_key
    witness = config.anchor.witness
    return LogTrust(
        origin=config.anchor.anchor.origin,
        public_key=public,
        witness_name=None if witness is None else witness.name,
        witness_key=None if witness is None else witness.public_key,
    )


def _run(args: argparse.Namespace, out: TextIO) -> int:
    config = api_config.load(args.config)
    host, port = config.api.host, config.api.port
    if args.listen is not None:
        problems: list[str] = []
        host, port = parse_listen(args.listen, problems, "--listen")
        if problems:
            raise ConfigError("--listen", problems)
    trust = trust_of(config)
    db = _open(config)
    try:
        service = ApiService(db, config.anchor.reconcile.state, trust)
        server = ApiServer((host, port), service)
    except BaseException:
        db.close()
        raise
    stop = threading.Event()
    handle_signals(stop)
    thread = threading.Thread(target=server.serve_forever, name="api-http", daemon=True)
    thread.start()
    log.info("read API listening on %s (store %s)", server.url, db.redacted())
    print(f"api listening on {server.url}", file=out, flush=True)
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        db.close()
        log.info("read API stopped")
    return 0
