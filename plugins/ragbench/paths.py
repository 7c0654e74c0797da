"""Where things live: the project checkout, its state folder, the workload environment.

Everything a run creates (virtual environments, the embedded database, the model, logs, results)
lives under one state folder, ``.state/`` in the checkout unless RAGBENCH_STATE_DIR says otherwise.
Deleting that folder resets the project.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(os.environ.get("RAGBENCH_HOME") or Path(__file__).resolve().parents[2])


def state_dir() -> Path:
    return Path(os.environ.get("RAGBENCH_STATE_DIR") or PROJECT_ROOT / ".state").resolve()


def sql_dir() -> Path:
    return PROJECT_ROOT / "sql"


def config_dir() -> Path:
    return Path(os.environ.get("RAGBENCH_CONFIG_DIR") or PROJECT_ROOT / "config")


def safe_name(value: str) -> str:
    """A run id as one path segment (``manual__2026-11-27T04:10:43+00:00`` -> ``manual__2026-11-27T04_10_43_00_00``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in value)


def results_dir(run_id: str, target: str) -> Path:
    return state_dir() / "results" / safe_name(run_id) / target


def workload_python() -> str:
    """The interpreter of the workload environment (never the orchestrator's own)."""
    return os.environ.get("RAGBENCH_WORKLOAD_PYTHON") or str(state_dir() / "venv-workload" / "bin" / "python")
