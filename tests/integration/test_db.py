"""The migration runner and the connection against a real PostgreSQL."""

from __future__ import annotations

import hashlib
import shutil
import threading

import pytest
import sqlalchemy as sa

from ragbench import db
from ragbench.errors import RagbenchError
from ragbench.paths import sql_dir

pytestmark = pytest.mark.integration

CORE_TABLES = {"runs", "target_runs", "ns_requests", "ns_summaries", "ew_results", "ingest_results",
               "cost_inputs", "schema_migrations"}


def tables(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")).scalars())


def views(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(sa.text(
            "SELECT table_name FROM information_schema.views WHERE table_schema = 'public'")).scalars())


def migrations(engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version"))]


ALL = [v for v, _ in db.migration_files()]  # every migration shipped in sql/, in order


@pytest.fixture
def tmp_sql(tmp_path):
    """A private copy of sql/ that a test may change."""
    target = tmp_path / "sql"
    shutil.copytree(sql_dir(), target)
    return target


def test_migrate_empty_database(engine):
    assert tables(engine) == set()
    assert db.migrate(engine) == ALL
    assert tables(engine) >= CORE_TABLES
    assert "v_scorecard" in views(engine)
    checksum = hashlib.sha256((sql_dir() / "0001_core.sql").read_text().encode()).hexdigest()
    assert migrations(engine)[0] == ("0001", "0001_core.sql", checksum)
    assert [v for v, _, _ in migrations(engine)] == ALL


def test_migrate_twice_applies_nothing_the_second_time(engine):
    db.migrate(engine)
    before_tables, before_views = tables(engine), views(engine)
    assert db.migrate(engine) == []
    assert tables(engine) == before_tables
    assert views(engine) == before_views
    assert len(migrations(engine)) == len(ALL)  # one row per file, not per run


def test_migrate_keeps_data(engine):
    db.migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO runs (run_id, dag_id, started_at) VALUES ('r1', 'd', now())"))
    db.migrate(engine)  # the views are recreated; the tables and rows stay
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one() == 1


def test_schema_migrations_has_one_row_per_file(engine, tmp_sql):
    (tmp_sql / "9001_extra.sql").write_text("CREATE TABLE extra (id int PRIMARY KEY);\n")
    assert db.migrate(engine, directory=tmp_sql) == [*ALL, "9001"]
    assert [(v, n) for v, n, _ in migrations(engine)][-1] == ("9001", "9001_extra.sql")
    assert len(migrations(engine)) == len(ALL) + 1
    assert "extra" in tables(engine)


def test_new_migration_is_applied_on_its_own(engine, tmp_sql):
    assert db.migrate(engine, directory=tmp_sql) == ALL
    (tmp_sql / "9002_add_note.sql").write_text("ALTER TABLE runs ADD COLUMN note text;\n")
    assert db.migrate(engine, directory=tmp_sql) == ["9002"]
    with engine.connect() as conn:
        cols = set(conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'")).scalars())
    assert "note" in cols


def test_changed_checksum_is_an_error(engine, tmp_sql):
    db.migrate(engine, directory=tmp_sql)
    core = tmp_sql / "0001_core.sql"
    core.write_text(core.read_text() + "\n-- an edit after the fact\n")
    (tmp_sql / "9003_more.sql").write_text("CREATE TABLE more_stuff (id int);\n")
    with pytest.raises(RagbenchError, match="^0001_core.sql changed after it was applied; add a new migration"):
        db.migrate(engine, directory=tmp_sql)
    assert "more_stuff" not in tables(engine)  # nothing applied past the error
    assert len(migrations(engine)) == len(ALL)


@pytest.mark.parametrize("name", ["1_core.sql", "0002-more.sql", "0002_More.sql", "core.sql"])
def test_bad_file_name_is_an_error(engine, tmp_sql, name):
    (tmp_sql / name).write_text("CREATE TABLE should_not_exist (id int);\n")
    with pytest.raises(RagbenchError, match=f"^{name}: migration files are named NNNN_lower_snake.sql$"):
        db.migrate(engine, directory=tmp_sql)
    assert tables(engine) == set()  # one transaction: not even schema_migrations is left


def test_two_migrations_with_one_number(engine, tmp_sql):
    (tmp_sql / "0001_again.sql").write_text("CREATE TABLE x (id int);\n")
    with pytest.raises(RagbenchError, match="two migrations share a number"):
        db.migrate(engine, directory=tmp_sql)


def test_failing_migration_rolls_back_everything(engine, tmp_sql):
    (tmp_sql / "9004_broken.sql").write_text("CREATE TABLE ok_table (id int);\nTHIS IS NOT SQL;\n")
    with pytest.raises(sa.exc.ProgrammingError):
        db.migrate(engine, directory=tmp_sql)
    assert tables(engine) == set()  # 0001 was rolled back with it


def test_concurrent_runners_apply_each_migration_once(database_url):
    engines = [db.connect(database_url) for _ in range(2)]
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run(e):
        try:
            results.append(db.migrate(e))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert sorted(results) == [[], ALL]
        assert len(migrations(engines[0])) == len(ALL)
    finally:
        for e in engines:
            e.dispose()


def test_connect_unreachable_database():
    with pytest.raises(RagbenchError) as info:
        db.connect("postgresql://postgres@127.0.0.1:1/x")
    message = str(info.value)
    assert message.startswith("cannot reach the results database at postgresql+psycopg://postgres@127.0.0.1:1/x: ")
    assert "\n" not in message
    assert "Traceback" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_connect_redacts_the_password():
    with pytest.raises(RagbenchError) as info:
        db.connect("postgresql://bench:s3cret@127.0.0.1:1/x")
    message = str(info.value)
    assert "s3cret" not in message
    assert "postgresql+psycopg://bench:***@127.0.0.1:1/x" in message


def test_connect_works(database_url):
    engine = db.connect(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == database_url.rsplit("/", 1)[1]
    finally:
        engine.dispose()


def view_oids(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {r[0]: r[1] for r in conn.execute(sa.text(
            "SELECT c.relname, c.oid::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'v'"))}


def hold_migration_lock(database_url):
    """A second session holding the runners' advisory lock (as a long migration would)."""
    engine = db.connect(database_url)
    conn = engine.connect()
    conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": db._LOCK_KEY})
    return engine, conn


def test_views_are_not_recreated_when_nothing_changed(engine):
    db.migrate(engine)
    before = view_oids(engine)
    assert db.migrate(engine) == []
    assert view_oids(engine) == before  # the same objects: not dropped and created again


def test_nothing_pending_takes_no_lock(engine, database_url):
    db.migrate(engine)
    other, conn = hold_migration_lock(database_url)
    try:
        assert db.pending(engine) == ([], [])
        assert db.migrate(engine, lock_timeout_s=0.2) == []  # would fail if it waited for the lock
    finally:
        conn.close()
        other.dispose()


def test_a_changed_view_file_recreates_the_views(engine, tmp_sql):
    db.migrate(engine, directory=tmp_sql)
    before = view_oids(engine)
    trends = tmp_sql / "views" / "060_trends.sql"
    trends.write_text(trends.read_text() + "\n-- a comment is a change too\n")
    assert db.pending(engine, tmp_sql) == ([], ["060_trends.sql"])
    assert db.migrate(engine, directory=tmp_sql) == []  # no migration, but the views were replayed
    after = view_oids(engine)
    assert set(after) == set(before) and after["v_trend_north_south"] != before["v_trend_north_south"]
    assert db.pending(engine, tmp_sql) == ([], [])
    with engine.connect() as conn:
        recorded = conn.execute(sa.text("SELECT checksum FROM schema_views WHERE name = '060_trends.sql'")).scalar()
    assert recorded == hashlib.sha256(trends.read_text().encode()).hexdigest()


def test_a_held_lock_is_a_clear_error_after_the_timeout(engine, database_url, tmp_sql):
    db.migrate(engine, directory=tmp_sql)
    (tmp_sql / "9005_later.sql").write_text("CREATE TABLE later (id int);\n")
    other, conn = hold_migration_lock(database_url)
    try:
        with pytest.raises(RagbenchError, match=r"another migration run holds the migration lock; gave up after 0.3 s"):
            db.migrate(engine, directory=tmp_sql, lock_timeout_s=0.3)
    finally:
        conn.close()
        other.dispose()
    assert "later" not in tables(engine)
    assert db.migrate(engine, directory=tmp_sql) == ["9005"]  # once the lock is free
