"""The results database: connection, and the migration runner for ``sql/``.

Migrations are plain SQL files ``sql/NNNN_name.sql``, applied once each in order and recorded in
``schema_migrations`` (with a checksum: an applied file that changed is an error, since migrations
are append-only). Views live in ``sql/views/*.sql``; each file's checksum is recorded in
``schema_views`` and the views are recreated only when a migration was applied or a view file
changed, so a run with nothing pending takes no lock and rewrites nothing.
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
LOCK_TIMEOUT_S = 60.0  # how long a runner waits for another one's migration before giving up


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


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def view_files(directory: Path | None = None) -> list[Path]:
    return sorted(((directory or sql_dir()) / "views").glob("*.sql"))


def _recorded(conn, table: str, key: str) -> dict[str, str] | None:
    """version/name -> checksum from a bookkeeping table, None when the table does not exist yet."""
    if conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"public.{table}"}).scalar() is None:
        return None
    return {r[0]: r[1] for r in conn.execute(sa.text(f"SELECT {key}, checksum FROM {table}"))}


def pending(engine: Engine, directory: Path | None = None) -> tuple[list[str], list[str]]:
    """What a migration run would do: (migration versions not applied, view files whose content
    differs from what was last applied). Reads only; raises on an applied migration that changed."""
    directory = directory or sql_dir()
    files = migration_files(directory)
    with engine.connect() as conn:
        done = _recorded(conn, "schema_migrations", "version") or {}
        views = _recorded(conn, "schema_views", "name") or {}
    todo = []
    for version, path in files:
        checksum = _sha256(path.read_text())
        if version not in done:
            todo.append(version)
        elif done[version] != checksum:
            raise RagbenchError(f"{path.name} changed after it was applied; add a new migration instead")
    stale = [p.name for p in view_files(directory) if views.get(p.name) != _sha256(p.read_text())]
    return todo, stale


def migrate(engine: Engine, directory: Path | None = None, lock_timeout_s: float = LOCK_TIMEOUT_S) -> list[str]:
    """Apply pending migrations, and recreate the views when a migration was applied or a view file
    changed. Returns the versions applied now.

    Nothing is locked or written when nothing is pending (the common case: every DAG run and CLI
    command calls this). Otherwise one transaction takes an advisory lock, waiting at most
    ``lock_timeout_s`` (another runner holding it longer is an error, not a hang), checks again
    and applies.
    """
    directory = directory or sql_dir()
    todo, stale = pending(engine, directory)
    if not todo and not stale:
        return []
    applied_now = []
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SELECT set_config('lock_timeout', :t, true)"),
                         {"t": f"{int(lock_timeout_s * 1000)}ms"})
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
            conn.execute(sa.text("SELECT set_config('lock_timeout', '0', true)"))
            conn.execute(sa.text(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"))
            conn.execute(sa.text(
                "CREATE TABLE IF NOT EXISTS schema_views ("
                " name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"))
            done = _recorded(conn, "schema_migrations", "version") or {}
            for version, path in migration_files(directory):
                sql = path.read_text()
                checksum = _sha256(sql)
                if version in done:
                    if done[version] != checksum:
                        raise RagbenchError(f"{path.name} changed after it was applied; add a new migration instead")
                    continue
                conn.exec_driver_sql(sql)
                conn.execute(sa.text("INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)"),
                             {"v": version, "n": path.name, "c": checksum})
                applied_now.append(version)
            views = _recorded(conn, "schema_views", "name") or {}
            files = view_files(directory)
            # The view files drop and recreate their views in file order (a later file builds on an
            # earlier one, and 990 grants on all of them), so any change replays the whole set.
            if applied_now or any(views.get(p.name) != _sha256(p.read_text()) for p in files):
                for view in files:
                    text = view.read_text()
                    conn.exec_driver_sql(text)
                    conn.execute(sa.text(
                        "INSERT INTO schema_views (name, checksum) VALUES (:n, :c) ON CONFLICT (name) DO UPDATE "
                        "SET checksum = EXCLUDED.checksum, applied_at = now()"), {"n": view.name, "c": _sha256(text)})
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise RagbenchError(f"another migration run holds the migration lock; gave up after {lock_timeout_s:g} s "
                                "(try again when it has finished)") from None
        raise
    return applied_now
