"""The PostgreSQL fixtures: a real cluster on loopback, fresh databases, crash durability."""

from __future__ import annotations

import os
import pwd

import psycopg
import pytest

from servers import PostgresFactory, PostgresServer


def test_session_cluster_serves_the_pledgewatch_database(postgres: PostgresServer) -> None:
    assert postgres.url == f"postgresql://postgres@127.0.0.1:{postgres.port}/pledgewatch"
    with psycopg.connect(postgres.url) as conn:
        row = conn.execute(
            "SELECT current_database(), current_setting('fsync'), "
            "current_setting('synchronous_commit'), current_setting('listen_addresses'), "
            "current_setting('server_version_num')::int"
        ).fetchone()
    assert row is not None
    assert row[:4] == ("pledgewatch", "on", "on", "127.0.0.1")
    assert row[4] >= 150000


def test_cluster_runs_as_the_postgres_user_when_we_are_root(postgres: PostgresServer) -> None:
    assert postgres.pid is not None
    with open(f"/proc/{postgres.pid}/status") as status:
        uid = next(int(line.split()[1]) for line in status if line.startswith("Uid:"))
    expected = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert uid == expected
    assert (postgres.data_dir / "pg_hba.conf").read_text() == "host all all 127.0.0.1/32 trust\n"


def test_pg_url_is_a_fresh_database(pg_url: str, postgres: PostgresServer) -> None:
    assert pg_url.startswith(f"postgresql://postgres@127.0.0.1:{postgres.port}/test_")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE scratch (n INT)")


def test_pg_url_databases_do_not_leak_between_tests(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE scratch (n INT)")  # would fail if the last test's DB leaked


def test_kill_9_and_restart_keeps_committed_rows(postgres_factory: PostgresFactory) -> None:
    server = postgres_factory()
    port, pid = server.port, server.pid
    conn = psycopg.connect(server.url, autocommit=True)
    conn.execute("CREATE TABLE t (n INT PRIMARY KEY, note TEXT NOT NULL)")
    with conn.transaction():
        conn.execute("INSERT INTO t VALUES (1, 'committed')")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (2, 'in flight')")
    server.restart(crash=True)  # kill -9 of the whole server, mid-transaction
    conn.close()
    assert (server.port, server.running) == (port, True)
    assert server.pid != pid
    assert "database system was interrupted" in server.log_since_start()
    with psycopg.connect(server.url) as conn:
        assert conn.execute("SELECT n, note FROM t ORDER BY n").fetchall() == [(1, "committed")]


def test_clean_restart_with_a_client_still_connected(postgres_factory: PostgresFactory) -> None:
    server = postgres_factory()
    with psycopg.connect(server.url, autocommit=True) as idle:
        idle.execute("CREATE TABLE t (n INT)")
        idle.execute("INSERT INTO t VALUES (7)")
        server.restart()  # a fast shutdown does not wait for the idle client
        with pytest.raises(psycopg.OperationalError):
            idle.execute("SELECT 1")
    assert "database system was shut down at" in server.log_since_start()
    with psycopg.connect(server.url) as conn:
        assert conn.execute("SELECT n FROM t").fetchall() == [(7,)]


def test_close_removes_the_cluster(postgres_factory: PostgresFactory) -> None:
    server = postgres_factory()
    workdir = server.workdir
    server.close()
    assert not workdir.exists()
    assert not server.running
