"""The live reconciler's catch-up on a long log stops as soon as shutdown is asked for."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from anchor.reconcile import engine
from anchor.reconcile.engine import LiveReconciler
from anchor.reconcile.settings import RuleSettings
from anchor.reconcile.state import StateConfig

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
