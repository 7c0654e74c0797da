"""Shared fixtures of the orchestrator-side tests: a real PostgreSQL for the whole session.

RAGBENCH_TEST_DATABASE_URL points the tests at an existing server (its user must be allowed to
create databases); otherwise the project's embedded PostgreSQL is started on a free port in a
temporary folder for the session and stopped at the end. Tests ask ``pg_url_factory`` for
databases of their own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

# SQLAlchemy is imported inside the fixtures: the workload environment's tests load this file too,
# and that environment has no database libraries.


def _psycopg_url(url: str):
    from sqlalchemy.engine import make_url

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
    from ragbench.pgserver import EmbeddedPostgres, free_port

    if os.geteuid() == 0:
        # As root the server runs as an unprivileged user that must traverse the data folder's
        # parents. Every pytest session resets /tmp/pytest-of-root to mode 0700, so another pytest
        # session starting on this machine would cut a server living there off its own files
        # (PANIC: could not open file ".../global/pg_control": Permission denied). Use a private
        # folder directly under /tmp instead, removed at the end.
        data_dir = Path(tempfile.mkdtemp(prefix="ragbench-test-pg-"))
        remove_after = True
    else:
        data_dir = tmp_path_factory.mktemp("pg")
        remove_after = False
    server = EmbeddedPostgres(data_dir=data_dir, port=free_port())
    try:
        for attempt in range(3):  # a port taken between free_port() and the start: try another
            try:
                url = server.start()
                break
            except RagbenchError:
                if attempt == 2:
                    raise
                server.port = free_port()
                time.sleep(0.5)
        yield url
    finally:
        server.stop()
        if remove_after:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url_factory(pg_url):
    """Call it to get the URL of a new, empty database (all dropped at the end of the session)."""
    import sqlalchemy as sa

    base = _psycopg_url(pg_url)
    admin = sa.create_engine(base.set(database="postgres"), isolation_level="AUTOCOMMIT")
    created: list[str] = []

    def make() -> str:
        name = f"test_{uuid.uuid4().hex}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return base.set(database=name).render_as_string(hide_password=False)

    yield make
    with admin.connect() as conn:
        for name in created:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
