"""ragbench: the orchestrator's command line (results database, pipeline runs, scorecard)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from ragbench import paths
from ragbench.errors import RagbenchError


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
    return {**os.environ, **{k: v for k, v in env.items() if k not in os.environ or k == "RAGBENCH_STATE_DIR"}}


def _airflow(*args: str, env: dict[str, str]) -> int:
    exe = Path(sys.executable).parent / "airflow"
    return subprocess.call([str(exe), *args], env=env, cwd=paths.PROJECT_ROOT)


def cmd_db(args) -> int:
    from ragbench import db
    from ragbench.pgserver import EmbeddedPostgres

    if args.action == "start":
        print(EmbeddedPostgres().start())
    elif args.action == "stop":
        print("stopped" if EmbeddedPostgres().stop() else "not running")
    elif args.action == "url":
        print(db.database_url(start_embedded=False))
    elif args.action == "migrate":
        applied = db.migrate(db.connect())
        print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
    return 0


def cmd_scorecard(args) -> int:
    from ragbench import db, scorecard

    engine = db.connect()
    db.migrate(engine)
    rows = scorecard.scorecard_rows(engine, args.run_id)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
    else:
        print(scorecard.format_table(rows))
    return 0


def cmd_costs(args) -> int:
    from ragbench import costs, db

    if args.action == "load":
        inputs = costs.load_costs(Path(args.file) if args.file else None)  # validate before touching the database
        engine = db.connect()
        db.migrate(engine)
        print(costs.store(engine, inputs).describe(inputs.path))
        return 0
    engine = db.connect()
    db.migrate(engine)
    clusters, usage = costs.cluster_prices(engine), costs.usage_prices(engine)
    if args.json:
        print(json.dumps({"clusters": clusters, "usage_prices": usage}, default=str, indent=2))
    else:
        print(costs.format_prices(clusters, usage))
    return 0


def cmd_run(args) -> int:
    """Run the rag_benchmark DAG once with Airflow (`airflow dags test`), then print the scorecard and
    the path of the run's report."""
    from ragbench import db, report, scorecard
    from ragbench.targets import load_targets

    config = load_targets()
    for name in args.targets:
        config.get(name)
    conf = {"targets": args.targets, "requests": args.requests, "concurrency": args.concurrency,
            "warmup_requests": args.warmup, "max_tokens": args.max_tokens, "ew_duration_s": args.ew_duration,
            "ew_samples": args.ew_samples}
    engine = db.connect()  # starts the embedded database when no URL is configured
    db.migrate(engine)
    env = airflow_env()
    if _airflow("db", "migrate", env=env) != 0:
        raise RagbenchError("airflow db migrate failed")
    print(f"running rag_benchmark for {', '.join(args.targets)} with {json.dumps(conf)}", flush=True)
    rc = _airflow("dags", "test", "rag_benchmark", "-c", json.dumps(conf), env=env)
    rows = scorecard.scorecard_rows(engine)
    print("\n=== scorecard ===")
    print(scorecard.format_table(rows))
    if rows:
        _print_report_files(report.write_report(engine, rows[0]["run_id"]))
    failed = [r["target"] for r in rows if r["status"] != "succeeded"]
    if rc != 0 or failed or not rows:
        print(f"error: the run did not fully succeed (airflow exit {rc}; failed: {', '.join(failed) or 'none'})",
              file=sys.stderr)
        return 1
    return 0


def _print_report_files(files) -> None:
    print(f"report: {files.html}")
    print(f"scorecard CSV: {files.csv}")


def cmd_report(args) -> int:
    """(Re)write a run's report.html and scorecard.csv (docs/report.md)."""
    from ragbench import db, report, scorecard

    if bool(args.run_id) == bool(args.latest):
        raise RagbenchError("name a run id or --latest (one of them)")
    engine = db.connect()  # a reader: no migration (ragbench db migrate does that)
    run_id = args.run_id or scorecard.latest_run_id(engine)
    if run_id is None:
        raise RagbenchError("the results database has no runs yet")
    _print_report_files(report.write_report(engine, run_id, Path(args.out_dir) if args.out_dir else None))
    return 0


def cmd_airflow(args) -> int:
    """Airflow's services on this machine (ragbench.airflow_services)."""
    from ragbench.airflow_services import AirflowServices

    services = AirflowServices()
    if args.action == "up":
        login = services.up(port=args.port)
        print(f"Airflow is up: {login.url}  (user {login.username}, password {login.password})")
        print(f"the login is kept in {services.secrets_file}; logs in {services.log_dir}")
        return 0
    if args.action == "down":
        stopped = services.down()
        print(f"stopped: {', '.join(stopped)}" if stopped else "not running")
        return 0
    status = services.status()
    for component, pid in status.items():
        print(f"{component:14} {'running (pid ' + str(pid) + ')' if pid else 'stopped'}")
    if any(status.values()):
        print(f"UI and REST API: {services.url()}")
    return 0 if all(status.values()) else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("db", help="the results database")
    p.add_argument("action", choices=["start", "stop", "url", "migrate"])
    p.set_defaults(fn=cmd_db)
    p = sub.add_parser("scorecard", help="print the scorecard of a run (default: the newest)")
    p.add_argument("--run-id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_scorecard)
    p = sub.add_parser("report", help="write a run's self-contained HTML report and scorecard CSV")
    p.add_argument("run_id", nargs="?", help="the run (see `ragbench scorecard`)")
    p.add_argument("--latest", action="store_true", help="the newest run")
    p.add_argument("--out-dir", help="write here instead of the run's results folder")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("costs", help="the cost model's inputs: load config/costs.yaml, show what is loaded")
    p.add_argument("action", choices=["load", "show"])
    p.add_argument("--file", help="the cost file to load (default: config/costs.yaml)")
    p.add_argument("--json", action="store_true", help="show: print JSON")
    p.set_defaults(fn=cmd_costs)
    p = sub.add_parser("airflow", help="Airflow's api-server (UI), scheduler, dag-processor and triggerer on "
                                       "127.0.0.1, as background processes")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--port", type=int, help="up: the api-server's port (default: RAGBENCH_AIRFLOW_PORT or 8080)")
    p.set_defaults(fn=cmd_airflow)
    p = sub.add_parser("run", help="run the rag_benchmark DAG once through Airflow, print the scorecard and "
                                   "write the report")
    p.add_argument("--targets", nargs="+", default=["local"])
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--ew-duration", type=float, default=3)
    p.add_argument("--ew-samples", type=int, default=3)
    p.set_defaults(fn=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except RagbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
