"""What `ragbench run` and `ragbench scorecard` print from the results store: only the run asked
for (or the one just made), never another run's results in its place."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from ragbench import cli, db, local_run

pytestmark = pytest.mark.integration


@pytest.fixture
def store(pg_url_factory, monkeypatch, tmp_path):
    url = pg_url_factory()
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", url)
    monkeypatch.setenv("RAGBENCH_STATE_DIR", str(tmp_path))
    engine = db.connect(url)
    db.migrate(engine)
    start = datetime(2026, 11, 1, 2, tzinfo=timezone.utc)
    with engine.begin() as conn:
        for day in range(7):
            conn.execute(sa.text("INSERT INTO runs (run_id, dag_id, started_at) VALUES (:r, 'rag_benchmark', :s)"),
                         {"r": f"scheduled__2026-11-0{day + 1}", "s": start + timedelta(days=day)})
    yield engine
    engine.dispose()


def test_scorecard_of_an_unknown_run_names_the_newest(store, capsys):
    assert cli.main(["scorecard", "--run-id", "manual__nope"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("error: no run 'manual__nope' in the results database; the newest: scheduled__2026-11-07, "
                   "scheduled__2026-11-06, scheduled__2026-11-05, scheduled__2026-11-04, scheduled__2026-11-03\n")


def test_scorecard_of_an_unknown_run_in_an_empty_store(pg_url_factory, monkeypatch, capsys):
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", pg_url_factory())
    assert cli.main(["scorecard", "--run-id", "manual__nope"]) == 1
    assert capsys.readouterr().err == "error: no run 'manual__nope' in the results database; it has no runs yet\n"


def _outcome(monkeypatch, outcome: local_run.RunOutcome) -> list[str]:
    seen = []

    def run_dag(conf_json, env, verbose, out=print):
        seen.append(conf_json)
        return outcome

    monkeypatch.setattr(local_run, "run_dag", run_dag)
    return seen


def test_a_run_that_never_started_shows_no_earlier_results(store, monkeypatch, capsys, tmp_path):
    log = tmp_path / "logs" / "ragbench-run.log"
    seen = _outcome(monkeypatch, local_run.RunOutcome(1, None, {}, log))
    assert cli.main(["run", "--requests", "8"]) == 1
    out, err = capsys.readouterr()
    assert seen == ['{"requests": 8}']
    assert "scheduled__" not in out + err and "report:" not in out
    assert err.strip().splitlines()[-1] == f"error: Airflow started no run (exit 1); Airflow's log: {log}"


def test_a_run_that_recorded_nothing_says_so(store, monkeypatch, capsys):
    _outcome(monkeypatch, local_run.RunOutcome(1, "manual__this", {"start_run": "failed",
                                                                   "report_scorecard": "upstream_failed"}, None))
    assert cli.main(["run"]) == 1
    out, err = capsys.readouterr()
    assert "=== scorecard ===\nrun manual__this recorded no results\n" in out
    assert "scheduled__" not in out + err and "report:" not in out
    assert err.strip() == ("error: the run did not fully succeed (airflow exit 1; failed: none; failed tasks: "
                           "report_scorecard, start_run)")


def test_the_run_made_is_the_one_shown(store, monkeypatch, capsys):
    with store.begin() as conn:  # this run started before the newest one in the store
        conn.execute(sa.text("INSERT INTO runs (run_id, dag_id, started_at) VALUES ('manual__this', 'rag_benchmark', "
                             "'2026-10-01T00:00:00Z')"))
        conn.execute(sa.text("INSERT INTO target_runs (run_id, target, kind, provider, status, started_at) VALUES "
                             "('manual__this', 'local', 'local', 'local', 'succeeded', '2026-10-01T00:00:00Z')"))
    _outcome(monkeypatch, local_run.RunOutcome(0, "manual__this", {"start_run": "success"}, None))
    assert cli.main(["run"]) == 0
    out, _ = capsys.readouterr()
    assert "run manual__this" in out and "scheduled__" not in out
    assert Path(out.split("report: ")[1].split("\n")[0]).exists()
