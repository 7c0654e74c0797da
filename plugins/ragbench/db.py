"""The results database: connection, and the migration runner for ``sql/``.

Migrations are plain SQL files ``sql/NNNN_name.sql``, applied once each in order and recorded in
``schema_migrations`` (with a checksum: an applied file that changed is an error, since migrations
are append-only). Views live in ``sql/views/*.sql`` and are recreated after every migration run.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ragbench.errors import RagbenchError
from ragbench.paths import sql_dir

MIGRATION_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_KEY = 7_163_001  # advisory lock: concurrent runners apply migrations one at a time


def database_url(start_embedded: bool = True) -> str:
    """RAGBENCH_DATABASE_URL if set, else the embedded PostgreSQL (started when needed)."""
    url = os.environ.get("RAGBENCH_DATABASE_URL")
    if url:
        return url
    from ragbench.pgserver import EmbeddedPostgres

    server = EmbeddedPostgres()
    return server.start() if start_embedded else server.url


def _normalize(url: str) -> str:
    # Accept the common spellings; talk to PostgreSQL through psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def connect(url: str | None = None) -> Engine:
    url = _normalize(url or database_url())
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise RagbenchError(f"cannot reach the results database at {_redact(url)}: {reason}") from None
    except sa.exc.ArgumentError as exc:
        raise RagbenchError(f"bad database URL {_redact(url)}: {exc}") from None
    return engine


def _redact(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


def migration_files(directory: Path | None = None) -> list[tuple[str, Path]]:
    directory = directory or sql_dir()
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = MIGRATION_RE.match(path.name)
        if not m:
            raise RagbenchError(f"{path.name}: migration files are named NNNN_lower_snake.sql")
        found.append((m.group(1), path))
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise RagbenchError("two migrations share a number in sql/")
    return found


def migrate(engine: Engine, directory: Path | None = None) -> list[str]:
    """Apply pending migrations, then recreate the views. Returns the versions applied now."""
    directory = directory or sql_dir()
    applied_now = []
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        conn.execute(sa.text(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"))
        done = {r.version: r.checksum for r in conn.execute(sa.text("SELECT version, checksum FROM schema_migrations"))}
        for version, path in migration_files(directory):
            sql = path.read_text()
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            if version in done:
                if done[version] != checksum:
                    raise RagbenchError(f"{path.name} changed after it was applied; add a new migration instead")
                continue
            conn.exec_driver_sql(sql)
            conn.execute(sa.text("INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)"),
                         {"v": version, "n": path.name, "c": checksum})
            applied_now.append(version)
        for view in sorted((directory / "views").glob("*.sql")):
            conn.exec_driver_sql(view.read_text())
    return applied_now
