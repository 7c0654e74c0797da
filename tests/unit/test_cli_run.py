"""`ragbench run`'s options and checks: one option per DAG param, every value judged by the DAG's own
schema before anything starts, one line per refusal; the watcher that finds this invocation's run."""

from __future__ import annotations

import sqlite3

import pytest

from ragbench import cli
from ragbench.local_run import MetadataWatcher
from ragbench.run_params import RUN_PARAMS, run_params
from ragbench.targets import load_targets

pytestmark = pytest.mark.unit

UNREACHABLE_DB = "postgresql://nobody@127.0.0.1:9/none"  # reaching for it would be a different error


def run_args(*argv: str):
    return cli.build_parser().parse_args(["run", *argv])


def refusal(capsys, monkeypatch, *argv: str) -> str:
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", UNREACHABLE_DB)
    assert cli.main(["run", *argv]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1, err  # one line, no traceback
    return err.strip()


def test_every_dag_param_is_an_option():
    params = run_params()
    assert [p.name for p in params][1:] == [p.name for p in RUN_PARAMS]
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    for p in params:
        assert "--" + p.name.replace("_", "-") in help_text, p.name


def test_only_the_options_given_are_sent():
    args = run_args("--requests", "8", "--targets", "local", "--keep-deployment", "--sweep-levels", "1", "4")
    assert cli.run_conf(args, run_params()) == {"requests": 8, "targets": ["local"], "keep_deployment": True,
                                                "sweep_levels": [1, 4]}
    assert cli.run_conf(run_args(), run_params()) == {}


def test_conf_json_and_options_merge_options_win():
    args = run_args("--conf", '{"load_mode": "poisson", "rate_rps": 0.5, "requests": 100}', "--requests", "10",
                    "--cache", "warm")
    assert cli.run_conf(args, run_params()) == {"load_mode": "poisson", "rate_rps": 0.5, "requests": 10,
                                                "cache": "warm"}


@pytest.mark.parametrize("argv,message", [
    (["--concurrency", "0"], "error: concurrency: 0 is less than the minimum of 1"),
    (["--concurrency", "2.5"], "error: concurrency: 2.5 is not of type 'integer'"),
    (["--cache", "hot"], "error: cache: 'hot' is not one of ['cold', 'warm']"),
    (["--targets", "mars"], f"error: targets: 'mars' is not one of {load_targets().names()}"),
    (["--sweep-levels", "1", "2", "2"], "error: sweep_levels: [1, 2, 2] has non-unique elements"),
    (["--slo-attainment-target", "0"], "error: slo_attainment_target: 0 is less than or equal to the minimum of 0"),
    (["--conf", '{"concurency": 3}'], "error: concurency: not a parameter of the run (did you mean concurrency?)"),
    (["--conf", '{"requests": 0}'], "error: requests: 0 is less than the minimum of 1"),
    (["--conf", "[1]"], "error: --conf must be a JSON object of parameters"),
    (["--conf", "{requests: 1}"], "error: --conf is not valid JSON: Expecting property name enclosed in double "
                                  "quotes: line 1 column 2 (char 1)"),
])
def test_a_bad_value_is_refused_in_one_line_before_anything_starts(capsys, monkeypatch, argv, message):
    assert refusal(capsys, monkeypatch, *argv) == message


def test_defaults_of_unset_params_are_valid():
    from ragbench.run_params import validate_conf

    resolved = validate_conf({}, run_params())
    assert resolved["concurrency"] == 4 and resolved["cache"] == "cold" and resolved["targets"] == ["local"]


# --- finding this invocation's run in Airflow's metadata -------------------------------------------

def metadata(path):
    conn = sqlite3.connect(path)
    conn.executescript("CREATE TABLE dag_run (id INTEGER PRIMARY KEY, dag_id TEXT, run_id TEXT);"
                       "CREATE TABLE task_instance (dag_id TEXT, run_id TEXT, task_id TEXT, state TEXT);")
    return conn


def test_the_watcher_never_takes_an_earlier_run_for_this_one(tmp_path):
    db = tmp_path / "airflow.db"
    with metadata(db) as conn:
        conn.execute("INSERT INTO dag_run (dag_id, run_id) VALUES ('rag_benchmark', 'manual__earlier')")
        conn.execute("INSERT INTO task_instance VALUES ('rag_benchmark', 'manual__earlier', 'start_run', 'success')")
    watcher = MetadataWatcher(db, MetadataWatcher.newest_run_pk(db))
    assert watcher.poll() == {} and watcher.run_id is None  # this invocation has not created its run yet
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO dag_run (dag_id, run_id) VALUES ('cost_inputs', 'scheduled__other_dag')")
        conn.execute("INSERT INTO dag_run (dag_id, run_id) VALUES ('rag_benchmark', 'manual__this')")
        conn.execute("INSERT INTO task_instance VALUES ('rag_benchmark', 'manual__this', 'start_run', 'running')")
        conn.execute("INSERT INTO task_instance VALUES ('rag_benchmark', 'manual__this', 'report_scorecard', NULL)")
    assert watcher.poll() == {"start_run": "running"}
    assert watcher.run_id == "manual__this"


def test_the_watcher_of_a_fresh_home(tmp_path):
    assert MetadataWatcher.newest_run_pk(tmp_path / "missing.db") == 0
    sqlite3.connect(tmp_path / "empty.db").close()
    assert MetadataWatcher.newest_run_pk(tmp_path / "empty.db") == 0
