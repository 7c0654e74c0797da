"""A real PostgreSQL for the results-store tests, and a fresh database for every test.

RAGBENCH_TEST_DATABASE_URL points the tests at an existing server (its user must be allowed to
create databases); otherwise the project's embedded PostgreSQL is started on a free port in a
temporary folder for the session and stopped at the end.
"""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _psycopg_url(url: str) -> URL:
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory):
    """URL of a running PostgreSQL server (a database on it; tests make their own)."""
    url = os.environ.get("RAGBENCH_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from ragbench.errors import RagbenchError
    from ragbench.pgserver import EmbeddedPostgres

    server = EmbeddedPostgres(data_dir=tmp_path_factory.mktemp("pg"), port=_free_port())
    try:
        # Every pytest session resets /tmp/pytest-of-<user> to mode 0700; when the server runs as an
        # unprivileged user (we are root), a pytest session starting at the same moment elsewhere can
        # make initdb/pg_ctl fail. start() restores the permissions, so try it again before giving up.
        for attempt in range(3):
            try:
                url = server.start()
                break
            except RagbenchError:
                if attempt == 2:
                    raise
                time.sleep(1)
        yield url
    finally:
        server.stop()


@pytest.fixture
def database_url(pg_url):
    """URL of a new, empty database created for this test and dropped after it."""
    base = _psycopg_url(pg_url)
    name = f"test_{uuid.uuid4().hex}"
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield base.set(database=name).render_as_string(hide_password=False)
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@pytest.fixture
def engine(database_url):
    from ragbench import db

    eng = db.connect(database_url)
    yield eng
    eng.dispose()
