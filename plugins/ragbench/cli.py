"""ragbench: the orchestrator's command line (results database, pipeline runs, scorecard)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ragbench import paths
from ragbench.errors import RagbenchError


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
    if args.run_id and not rows:
        raise RagbenchError(f"no run {args.run_id!r} in the results database; {_newest_runs(engine)}")
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
    if args.action == "reprice":
        return _reprice(args)
    engine = db.connect()
    db.migrate(engine)
    clusters, usage = costs.cluster_prices(engine), costs.usage_prices(engine)
    if args.json:
        print(json.dumps({"clusters": clusters, "usage_prices": usage}, default=str, indent=2))
    else:
        print(costs.format_prices(clusters, usage))
    return 0


def _reprice(args) -> int:
    """Price past target runs again from cost_inputs as it is now (docs/cost-model.md)."""
    from datetime import date

    from ragbench import db, run_prices

    if bool(args.run_id) == bool(args.since):
        raise RagbenchError("costs reprice: name the runs to reprice with --run-id or --since (one of them)")
    try:
        since = date.fromisoformat(args.since) if args.since else None
    except ValueError:
        raise RagbenchError(f"costs reprice: --since {args.since!r} is not a date (YYYY-MM-DD)") from None
    engine = db.connect()
    db.migrate(engine)
    changes = run_prices.reprice(engine, run_id=args.run_id, since=since)
    for c in changes:
        print(c.describe())
    print(f"repriced {len(changes)} target run(s): {sum(c.changed for c in changes)} changed")
    return 0


def _newest_runs(engine, count: int = 5) -> str:
    import sqlalchemy as sa

    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT :n"),
                            {"n": count}).scalars().all()
    return f"the newest: {', '.join(runs)}" if runs else "it has no runs yet"


def run_conf(args, params) -> dict:
    """The run's conf: --conf JSON, then the options given (they win), checked against the DAG's
    schemas. Only what the user set is sent; Airflow fills in the other defaults."""
    from ragbench.run_params import validate_conf

    conf = {}
    if args.conf:
        try:
            conf = json.loads(args.conf)
        except ValueError as exc:
            raise RagbenchError(f"--conf is not valid JSON: {exc}") from None
        if not isinstance(conf, dict):
            raise RagbenchError("--conf must be a JSON object of parameters")
    conf.update({p.name: getattr(args, p.name) for p in params if hasattr(args, p.name)})
    validate_conf(conf, params)
    return conf


def cmd_run(args) -> int:
    """Run the rag_benchmark DAG once with Airflow (`airflow dags test`), then print the scorecard and
    the path of the run's report."""
    from ragbench import db, local_run, report, scorecard
    from ragbench.run_params import run_params

    conf = run_conf(args, run_params())  # before anything starts
    engine = db.connect()  # starts the embedded database when no URL is configured
    db.migrate(engine)
    print(f"running rag_benchmark with {json.dumps(conf)}", flush=True)
    outcome = local_run.run_dag(json.dumps(conf), local_run.airflow_env(), args.verbose,
                                out=lambda line: print(line, flush=True))
    where = f"; Airflow's log: {outcome.log}" if outcome.log else ""
    if outcome.run_id is None:
        raise RagbenchError(f"Airflow started no run (exit {outcome.exit_code}){where}")
    rows = scorecard.scorecard_rows(engine, outcome.run_id)  # this run's, never an earlier one's
    print("\n=== scorecard ===")
    if rows:
        print(scorecard.format_table(rows))
        _print_report_files(report.write_report(engine, outcome.run_id))
    else:
        print(f"run {outcome.run_id} recorded no results")
    failed = [r["target"] for r in rows if r["status"] != "succeeded"]
    failed_tasks = sorted(t for t, state in outcome.task_states.items() if state in ("failed", "upstream_failed"))
    if outcome.exit_code != 0 or failed or not rows:
        print(f"error: the run did not fully succeed (airflow exit {outcome.exit_code}; failed: "
              f"{', '.join(failed) or 'none'}; failed tasks: {', '.join(failed_tasks) or 'none'}){where}",
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


def cmd_doctor(args) -> int:
    """Preflight a cluster target (docs/kubernetes.md, "Preflight"): one line per finding; exit 1 on
    any error."""
    from ragbench.targets import load_targets

    target = load_targets().get(args.target)
    if target.kind != "kubernetes":
        raise RagbenchError(f"{target.name} is a {target.kind} target: doctor checks kubernetes targets")
    from ragbench.local_run import airflow_env

    os.environ.update(airflow_env())  # the connections `ragbench run` uses (or AIRFLOW_CONN_* variables)
    from ragbench import preflight

    api_client = None
    if args.kubeconfig:
        from kubernetes import config

        api_client = config.new_client_from_config(config_file=args.kubeconfig, context=args.context)
    findings = preflight.preflight(target, api_client)
    for finding in findings:
        print(finding.line())
    bad = preflight.errors(findings)
    print(f"{target.name}: {len(bad)} error(s), {sum(f.level == preflight.WARNING for f in findings)} "
          f"warning(s), {sum(f.level == preflight.OK for f in findings)} check(s) passed")
    return 1 if bad else 0


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


def _json_or_text(text: str):
    """A command-line value as JSON when it is (numbers, lists), else the text: the schema, not
    argparse, judges it, so a bad value gets the same message as in Airflow."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def add_param_options(parser: argparse.ArgumentParser) -> None:
    """One option per DAG param (ragbench.run_params), e.g. --max-tokens for max_tokens."""
    from ragbench.run_params import RUN_PARAMS, run_params, targets_param

    try:
        params = run_params()
    except RagbenchError:  # a broken targets config is reported by `run` itself, not by every command
        params = (targets_param([], []), *RUN_PARAMS)
    for p in params:
        flag = "--" + p.name.replace("_", "-")
        help_text = f"{p.description} (default: {json.dumps(p.default)})".replace("%", "%%")
        if p.type == "boolean":
            parser.add_argument(flag, dest=p.name, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=help_text)
        elif p.type == "array":
            parser.add_argument(flag, dest=p.name, nargs="+", type=_json_or_text, default=argparse.SUPPRESS,
                                metavar=p.name.upper(), help=help_text)
        else:
            parser.add_argument(flag, dest=p.name, type=str if p.type == "string" else _json_or_text,
                                default=argparse.SUPPRESS, metavar=p.name.upper(), help=help_text)


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
    p = sub.add_parser("costs", help="the cost model's inputs: load config/costs.yaml, show what is loaded, "
                                     "reprice past runs")
    p.add_argument("action", choices=["load", "show", "reprice"])
    p.add_argument("--file", help="the cost file to load (default: config/costs.yaml)")
    p.add_argument("--json", action="store_true", help="show: print JSON")
    p.add_argument("--run-id", help="reprice: the target runs of this run")
    p.add_argument("--since", help="reprice: the target runs that started on or after this UTC day (YYYY-MM-DD)")
    p.set_defaults(fn=cmd_costs)
    p = sub.add_parser("airflow", help="Airflow's api-server (UI), scheduler, dag-processor and triggerer on "
                                       "127.0.0.1, as background processes")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--port", type=int, help="up: the api-server's port (default: RAGBENCH_AIRFLOW_PORT or 8080)")
    p.set_defaults(fn=cmd_airflow)
    p = sub.add_parser("run", help="run the rag_benchmark DAG once through Airflow, print the scorecard and "
                                   "write the report")
    add_param_options(p)
    p.add_argument("--conf", help="parameters as a JSON object, e.g. '{\"load_mode\": \"sweep\"}' (options win)")
    p.add_argument("--verbose", action="store_true", help="show Airflow's log lines instead of keeping them in "
                                                          "a file under the state folder's logs/")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("doctor", help="check that a cluster target can take a deploy (preflight), in seconds")
    p.add_argument("target", help="a kubernetes target of config/targets.yaml")
    p.add_argument("--kubeconfig", help="use this kubeconfig instead of the target's Airflow connection")
    p.add_argument("--context", help="with --kubeconfig: the context to use (default: its current one)")
    p.set_defaults(fn=cmd_doctor)
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
