"""Shared fixtures of the orchestrator-side tests: a real PostgreSQL for the whole session.

RAGBENCH_TEST_DATABASE_URL points the tests at an existing server; otherwise the project's
embedded PostgreSQL is started on a free port in a temporary folder and stopped at the end.
Every test that asks for a database gets a fresh one of its own.
"""

from __future__ import annotations

import os
import socket
import uuid

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory):
    """URL of the server's maintenance database (postgres)."""
    url = os.environ.get("RAGBENCH_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from ragbench.pgserver import EmbeddedPostgres

    server = EmbeddedPostgres(data_dir=tmp_path_factory.mktemp("pg"), port=_free_port())
    server.start()
    yield server.url.rsplit("/", 1)[0] + "/postgres"
    server.stop()


@pytest.fixture(scope="session")
def pg_url_factory(pg_server_url):
    """Call it to get the URL of a new, empty database (dropped at the end of the session)."""
    import sqlalchemy as sa

    admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def make() -> str:
        name = f"test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return pg_server_url.rsplit("/", 1)[0] + f"/{name}"

    yield make
    with admin.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
