"""`ragbench run`: one run of rag_benchmark with `airflow dags test`, watched from the outside.

Airflow's own output goes to a log file (or to the terminal with --verbose); the terminal shows
each task's state as it changes, read from the run's Airflow metadata (SQLite in <state>/airflow).
The run is identified by the DAG run this invocation created, so a run that fails early is never
reported with an earlier run's results.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ragbench import paths
from ragbench.errors import RagbenchError
from ragbench.steps import measure_pool_command

DAG_ID = "rag_benchmark"
POLL_S = 2.0
# Task states worth a line on the terminal (queued/scheduled/none are noise).
SHOWN_STATES = {"running", "success", "failed", "skipped", "upstream_failed", "up_for_retry", "up_for_reschedule"}


def airflow_env() -> dict[str, str]:
    """A private Airflow home under the state folder: SQLite metadata, this project's dags and plugins."""
    home = paths.state_dir() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(paths.PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths.PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
        "RAGBENCH_STATE_DIR": str(paths.state_dir()),
    }
    # Where the run's Airflow lives is fixed: an AIRFLOW_HOME or database inherited from the caller
    # (another Airflow, a test session) would put the run somewhere the progress reader never looks.
    fixed = ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__PLUGINS_FOLDER",
             "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "RAGBENCH_STATE_DIR")
    return {**os.environ, **{k: v for k, v in env.items() if k not in os.environ or k in fixed}}


def metadata_db(env: dict[str, str]) -> Path:
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    if not url.startswith("sqlite:///"):
        raise RagbenchError("ragbench run keeps Airflow's metadata in SQLite; AIRFLOW__DATABASE__SQL_ALCHEMY_CONN "
                            f"is {url.split(':', 1)[0]}")
    return Path(url[len("sqlite:///"):])


@dataclass
class RunOutcome:
    exit_code: int
    run_id: str | None  # None: Airflow created no run
    task_states: dict[str, str]
    log: Path | None


class MetadataWatcher:
    """Reads the DAG run created after `since_id` and its task states from the SQLite metadata."""

    def __init__(self, db: Path, since_id: int) -> None:
        self.db, self.since_id = db, since_id
        self.run_id: str | None = None

    @staticmethod
    def newest_run_pk(db: Path) -> int:
        if not db.exists():
            return 0
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
                return conn.execute("SELECT coalesce(max(id), 0) FROM dag_run").fetchone()[0]
        except sqlite3.OperationalError:  # no tables yet
            return 0

    def poll(self) -> dict[str, str]:
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as conn:
                if self.run_id is None:
                    row = conn.execute("SELECT run_id FROM dag_run WHERE dag_id = ? AND id > ? ORDER BY id LIMIT 1",
                                       (DAG_ID, self.since_id)).fetchone()
                    if row is None:
                        return {}
                    self.run_id = row[0]
                rows = conn.execute("SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                                    (DAG_ID, self.run_id)).fetchall()
        except sqlite3.OperationalError:  # locked by the writer, or not created yet: next time
            return {}
        return {task: state for task, state in rows if state}


def prepare(env: dict[str, str], log) -> None:
    """Migrate the run's metadata database and create the pool the measuring tasks use."""
    for args in (["db", "migrate"], measure_pool_command()):
        rc = _airflow(args, env, stdout=log)
        if rc != 0:
            raise RagbenchError(f"airflow {' '.join(args[:2])} failed (exit {rc})"
                                + (f"; see {log.name}" if hasattr(log, "name") else ""))


def run_dag(conf_json: str, env: dict[str, str], verbose: bool, out=print) -> RunOutcome:
    """Run the DAG once; print each task's state changes; return how it ended."""
    log_path = None
    if verbose:
        log = None
    else:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        log_path = paths.state_dir() / "logs" / f"ragbench-run-{stamp}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "ab")  # noqa: SIM115 - closed below, shared with the subprocesses
    try:
        out(f"Airflow's log: {log_path}" if log_path else "Airflow's log follows (--verbose)")
        prepare(env, log)
        db = metadata_db(env)
        watcher = MetadataWatcher(db, MetadataWatcher.newest_run_pk(db))
        proc = subprocess.Popen([_airflow_exe(), "dags", "test", DAG_ID, "-c", conf_json], env=env,
                                cwd=paths.PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT if log else None,
                                stdin=subprocess.DEVNULL)
        states = _follow(proc, watcher, out)
        return RunOutcome(proc.returncode, watcher.run_id, states, log_path)
    finally:
        if log is not None:
            log.close()


def _follow(proc: subprocess.Popen, watcher: MetadataWatcher, out) -> dict[str, str]:
    started = time.monotonic()
    shown: dict[str, str] = {}
    announced = False
    try:
        while True:
            finished = proc.poll() is not None
            states = watcher.poll()
            if watcher.run_id and not announced:
                out(f"run {watcher.run_id}")
                announced = True
            for task, state in sorted(states.items()):
                if state in SHOWN_STATES and shown.get(task) != state:
                    out(f"[{time.monotonic() - started:6.0f} s] {task}: {state}")
                    shown[task] = state
            if finished:
                return states
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(timeout=60)
        raise


def _airflow_exe() -> str:
    return str(Path(sys.executable).parent / "airflow")


def _airflow(args: list[str], env: dict[str, str], stdout) -> int:
    return subprocess.call([_airflow_exe(), *args], env=env, cwd=paths.PROJECT_ROOT, stdout=stdout,
                           stderr=subprocess.STDOUT if stdout else None, stdin=subprocess.DEVNULL)
