"""Shared fixtures: real servers on random loopback ports (see servers.py).

A missing server binary skips the test locally and fails it when CI=true
(`servers.require_binary`). Every server is closed at the end of its test; whatever is still
running at the end of the session is stopped by `pytest_sessionfinish` (and by `atexit`).
When a test fails, the tail of each of its servers' logs is printed in the teardown section.

This directory has no __init__.py, so pytest's default "prepend" import mode puts tests/ on
sys.path: test modules can `from servers import MosquittoServer`.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest

from servers import (
    MosquittoFactory,
    MosquittoServer,
    ServerProcess,
    require_binary,
    stop_all,
)

__all__ = ["require_binary"]

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    stop_all()


def _test_failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return any(report.failed for report in reports.values())


def _close_all(request: pytest.FixtureRequest, servers: list[ServerProcess]) -> None:
    failed = _test_failed(request)
    for server in servers:
        if failed:
            print(f"--- {server.name} on port {server.port}: log tail ---\n{server.log_tail(60)}")
        server.close()


@pytest.fixture
def mosquitto_factory(request: pytest.FixtureRequest) -> Iterator[MosquittoFactory]:
    """Build brokers: `mosquitto_factory(users=..., acl=..., tls=True, start=False, ...)`.

    Options are `MosquittoServer` fields. Brokers are started unless `start=False` and are
    closed (stopped, temp dir removed) after the test.
    """
    require_binary("mosquitto")
    made: list[ServerProcess] = []

    def make(*, start: bool = True, **options: Any) -> MosquittoServer:
        if options.get("users"):
            require_binary("mosquitto_passwd")
        if options.get("tls"):
            require_binary("openssl")
        server = MosquittoServer(**options)
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    _close_all(request, made)


@pytest.fixture
def mosquitto(mosquitto_factory: MosquittoFactory) -> MosquittoServer:
    """A fresh anonymous broker for this test on 127.0.0.1:<random>, persistence on."""
    return mosquitto_factory()
