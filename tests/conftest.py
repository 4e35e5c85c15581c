"""Shared fixtures: real servers on random loopback ports (see servers.py).

A missing server binary skips the test locally and fails it when CI=true
(`servers.require_binary`). Every server is closed at the end of its test; whatever is still
running at the end of the session is stopped by `pytest_sessionfinish` (and by `atexit`).
When a test fails, the tail of each of its servers' logs is printed in the teardown section.

This directory has no __init__.py, so pytest's default "prepend" import mode puts tests/ on
sys.path: test modules can `from servers import MosquittoServer`.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from servers import (
    ANVIL_DIRS,
    PG_BIN_DIRS,
    AnvilFactory,
    AnvilServer,
    InfluxDB1Server,
    MosquittoFactory,
    MosquittoServer,
    PostgresFactory,
    PostgresServer,
    ServerProcess,
    VictoriaMetricsServer,
    anvil_binary,
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


@pytest.fixture
def anvil_factory(request: pytest.FixtureRequest) -> Iterator[AnvilFactory]:
    """Build Ethereum dev nodes: `anvil_factory(block_time=1, chain_id=..., start=False)`.

    Options are `AnvilServer` fields. Nodes are started unless `start=False` and are closed
    after the test. anvil comes from npm (scripts/ensure-servers.sh puts it in .tools/).
    """
    binary = anvil_binary(require_binary("anvil", ANVIL_DIRS))
    made: list[ServerProcess] = []

    def make(*, start: bool = True, **options: Any) -> AnvilServer:
        server = AnvilServer(binary=binary, **options)
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    _close_all(request, made)


@pytest.fixture
def anvil(anvil_factory: AnvilFactory) -> AnvilServer:
    """A fresh automining anvil for this test on 127.0.0.1:<random> (chain id 31337)."""
    return anvil_factory()


def _require_postgres() -> None:
    require_binary("initdb", PG_BIN_DIRS)
    require_binary("postgres", PG_BIN_DIRS)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the whole session on 127.0.0.1:<random> (database
    `pledgewatch`). Tests that write should take `pg_url` (a fresh database each); tests
    that stop, kill or reconfigure a server take `postgres_factory` instead.
    """
    _require_postgres()
    server = PostgresServer()
    server.start()
    yield server
    server.close()


_PG_DATABASES = itertools.count(1)


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """URL of a fresh, empty database `test_<n>` on the session cluster; dropped afterwards."""
    name = f"test_{next(_PG_DATABASES)}"
    url = postgres.create_database(name)
    yield url
    postgres.drop_database(name)


@pytest.fixture
def postgres_factory(request: pytest.FixtureRequest) -> Iterator[PostgresFactory]:
    """Build private clusters: `postgres_factory(settings={...}, start=False)`.

    Options are `PostgresServer` fields; each cluster is closed (stopped, temp dir removed)
    after the test. initdb takes about half a second.
    """
    _require_postgres()
    made: list[ServerProcess] = []

    def make(*, start: bool = True, **options: Any) -> PostgresServer:
        server = PostgresServer(**options)
        made.append(server)
        if start:
            server.start()
        return server

    yield make
    _close_all(request, made)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty anchor store, once per backend: a SQLite file in `tmp_path`, or a fresh
    PostgreSQL database on the session cluster (started only when a test asks for it).
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'anchor.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def victoriametrics(request: pytest.FixtureRequest) -> Iterator[VictoriaMetricsServer]:
    """A fresh VictoriaMetrics for this test on 127.0.0.1:<random> (`url` takes
    `/api/v2/write`); stop/restart it to play a TSDB outage. Closed after the test.
    """
    server = VictoriaMetricsServer(binary=require_binary("victoria-metrics"))
    try:
        server.start()
        yield server
    finally:
        _close_all(request, [server])


@pytest.fixture
def influxdb1(request: pytest.FixtureRequest) -> Iterator[InfluxDB1Server]:
    """A fresh InfluxDB 1.x (Debian `influxdb`) for this test on 127.0.0.1:<random>: InfluxQL
    on `/query`, line protocol on the v1 `/write` (`write()`, `query()`). Closed after the test.
    """
    server = InfluxDB1Server(binary=require_binary("influxd"))
    try:
        server.start()
        yield server
    finally:
        _close_all(request, [server])
