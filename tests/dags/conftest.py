"""DagBags of the real DAG file, for the checked-in targets config or a temporary one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


def build_dagbag():
    """A fresh DagBag of dags/ (the DAG file is executed again: it reads the targets config anew)."""
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


@pytest.fixture(scope="session", autouse=True)
def _airflow_home(tmp_path_factory):
    os.environ.setdefault("AIRFLOW_HOME", str(tmp_path_factory.mktemp("airflow")))


@pytest.fixture(name="build_dagbag")
def _build_dagbag_fixture():
    return build_dagbag


@pytest.fixture(scope="module")
def checked_in_dag():
    bag = build_dagbag()
    assert bag.import_errors == {}
    return bag.dags["rag_benchmark"]
