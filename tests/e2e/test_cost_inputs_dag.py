"""End to end: the cost_inputs maintenance DAG through Airflow (`airflow dags test`) against a real
PostgreSQL. A first run loads the cost file, a run with the file unchanged skips and writes
nothing, a run after a price change loads it; each load, and only a load, updates the asset."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, pg_url_factory):
    base = tmp_path_factory.mktemp("cost-dag")
    config, home = base / "config", base / "airflow"
    config.mkdir()
    for name in ("targets.yaml", "costs.yaml"):
        shutil.copy(ROOT / "config" / name, config / name)
    url = pg_url_factory()
    env = {**os.environ, "RAGBENCH_DATABASE_URL": url, "RAGBENCH_CONFIG_DIR": str(config),
           "RAGBENCH_STATE_DIR": str(base / "state"), "AIRFLOW_HOME": str(home),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    exe = str(Path(sys.executable).parent / "airflow")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)

    migrated = run("db", "migrate")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    yield run, engine, config, home / "airflow.db"
    engine.dispose()


def states(metadata: Path) -> list[str]:
    with sqlite3.connect(metadata) as conn:
        return [r[0] for r in conn.execute(
            "SELECT state FROM task_instance WHERE dag_id = 'cost_inputs' ORDER BY start_date")]


def asset_events(metadata: Path) -> int:
    with sqlite3.connect(metadata) as conn:
        return conn.execute("SELECT count(*) FROM asset_event e JOIN asset a ON a.id = e.asset_id "
                            "WHERE a.name = 'ragbench://cost-inputs'").fetchone()[0]


def loads(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM cost_file_loads")).scalar()


def local_price(engine) -> float:
    with engine.connect() as conn:
        return float(conn.execute(sa.text(
            "SELECT price_usd FROM cost_inputs WHERE provider = 'local' AND component = 'machine'")).scalar())


def test_loads_on_change_only(airflow):
    run, engine, config, metadata = airflow

    first = run("dags", "test", "cost_inputs")
    assert first.returncode == 0, first.stderr[-3000:]
    assert states(metadata) == ["success"]
    assert loads(engine) == 1 and asset_events(metadata) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM cost_inputs")).scalar() > 0

    unchanged = run("dags", "test", "cost_inputs")
    assert unchanged.returncode == 0, unchanged.stderr[-3000:]
    assert states(metadata) == ["success", "skipped"]
    assert loads(engine) == 1 and asset_events(metadata) == 1  # nothing loaded, no asset update

    costs = config / "costs.yaml"
    data = yaml.safe_load(costs.read_text())
    data["local"][-1]["node_pools"][0]["usd_per_hour"] = 0.4
    costs.write_text(yaml.safe_dump(data, sort_keys=False))
    changed = run("dags", "test", "cost_inputs")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert states(metadata) == ["success", "skipped", "success"]
    assert loads(engine) == 2 and asset_events(metadata) == 2
    assert local_price(engine) == 0.4
