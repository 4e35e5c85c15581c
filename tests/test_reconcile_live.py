"""The live reconciler: catch-up yields to shutdown; inputs are not re-derived on every step."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from anchor.loanbook import LoanBook
from anchor.reconcile import engine
from anchor.reconcile.engine import LiveReconciler
from anchor.reconcile.settings import RuleSettings
from anchor.reconcile.state import StateConfig
from pledgewatch.release import ReleaseToken, sign_token
from pledgewatch.signing import SigningKey

from api_rig import NOW, build_store


def test_a_stop_during_catch_up_returns_between_batches_and_a_later_step_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = build_store(f"sqlite:{tmp_path / 'anchor.db'}", tmp_path)
    first, last, events = store.db.read().one(
        "SELECT MIN(leaf_index), MAX(leaf_index), COUNT(*) FROM events"
    )
    assert int(events) > 1
    monkeypatch.setattr(engine, "FOLLOW_BATCH", 1)
    stop = threading.Event()
    stop.set()
    live = LiveReconciler(store.db, StateConfig(), RuleSettings(), None)
    assert live.step(NOW, stop) == []
    assert live.cursor == int(first) + 1  # one batch, then it saw the stop: no evaluation
    live.step(NOW)  # without a stop it follows to the end of the log
    assert live.cursor == int(last) + 1
    store.db.close()


def test_tokens_are_verified_once_and_a_bad_one_stays_out(monkeypatch: pytest.MonkeyPatch) -> None:
    bank = SigningKey.generate()
    good = sign_token(ReleaseToken("rel-1", "wh-1", "L-1", "WR-1", 5, 1, 2), bank)
    forged = sign_token(
        ReleaseToken("rel-2", "wh-1", "L-1", "WR-1", 5, 1, 2), SigningKey.generate()
    )
    calls: list[bytes] = []
    real = engine.parse_token

    def counting(wire: bytes, key: bytes) -> ReleaseToken:
        calls.append(wire)
        return real(wire, key)

    monkeypatch.setattr(engine, "parse_token", counting)
    seen: dict[bytes, ReleaseToken | None] = {}
    for _ in range(3):
        tokens = engine.verified_tokens([good, forged], bank.public_key, seen)
        assert [t.id for t in tokens] == ["rel-1"]
    assert sorted(calls) == sorted([good, forged])  # each wire verified once in three steps


def test_the_book_is_parsed_again_only_when_another_version_is_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = build_store(f"sqlite:{tmp_path / 'anchor.db'}", tmp_path)
    reads: list[int] = []
    real = engine.read_version

    def counting(tx: Any, version: int) -> LoanBook:
        reads.append(version)
        return real(tx, version)

    monkeypatch.setattr(engine, "read_version", counting)
    cache = engine.InputsCache()
    first = cache.book_at(store.db, NOW)
    assert cache.book_at(store.db, NOW) is first and reads == [first.version]
    assert cache.book_at(store.db, 0) == engine.EMPTY_BOOK  # before any version: none in force
    store.db.close()
