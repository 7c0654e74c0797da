"""What the DAG's tasks do, kept out of the DAG file so that it stays thin and cheap to parse."""

from __future__ import annotations

import logging
import subprocess

from ragbench import db, loader, local_exec, results_store, scorecard
from ragbench.errors import RagbenchError
from ragbench.paths import PROJECT_ROOT
from ragbench.steps import STEPS, measures
from ragbench.targets import load_targets

log = logging.getLogger("ragbench.pipeline")


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def selected(target: str, params: dict) -> bool:
    return target in (params.get("targets") or [])


def start_run(run_id: str, dag_id: str, started_at, run_type: str | None, params: dict) -> str:
    config = load_targets()
    for name in params.get("targets") or []:
        config.get(name)  # unknown target names fail here, with the list of known ones
    # The cost inputs are loaded every run: validated first, then stored (idempotent, so cheap).
    from ragbench import costs

    cost_inputs = costs.load_costs(targets=config)
    engine = db.connect()
    db.migrate(engine)
    log.info("%s", costs.store(engine, cost_inputs).describe(cost_inputs.path))
    loader.record_run(engine, run_id, dag_id, started_at, run_type, params, git_revision())
    return run_id


def run_local_step(step: str, target: str, run_id: str, params: dict, deploy_ref: dict | None) -> dict:
    endpoint = None
    if deploy_ref:
        endpoint = local_exec.read_document(deploy_ref["path"])["data"].get("endpoint")
    return local_exec.run_step(step, target, run_id, params, endpoint)


def load_target_results(target: str, run_id: str, params: dict, started_at, refs: dict[str, dict | None],
                        reasons: dict[str, str] | None = None) -> dict:
    """Load every document a target's steps produced; record which steps failed or never ran, and
    why when the failed step's task said so (``reasons``: step name -> its one-line error; the key
    ``preflight`` holds the findings of a cluster preflight that stopped the group)."""
    t = load_targets().get(target)
    engine = db.connect()
    fingerprint = {"params": params, "git_revision": git_revision(), "kind": t.kind, "provider": t.provider}
    trid = loader.upsert_target_run(engine, run_id, target, t.kind, t.provider, t.region, None, fingerprint,
                                    started_at)
    failed = []
    for step in STEPS:
        ref = refs.get(step.name)
        if ref is None:  # the step left no document: nothing of an earlier attempt may stay
            loader.clear_step(engine, trid, step.name)
            if not step.is_teardown:
                failed.append(step.name)
            continue
        if results_store.is_reference(ref):  # the document is in the target's results store
            doc = results_store.resolve(ref, t.results_store_conn_id)
        else:
            doc = ref if "schema" in ref else local_exec.read_document(ref["path"])
        loader.load_document(engine, trid, doc)
        if not doc.get("ok"):
            failed.append(step.name)
    # Optional steps count once the run turned them on (local-only ones on the local target only).
    measuring = ("deploy", *(s.name for s in STEPS if measures(s)
                             and (not s.enabled_by or params.get(s.enabled_by))
                             and (t.kind == "local" or not s.local_only)))
    measuring_failed = [s for s in failed if s in measuring]
    error = None
    if measuring_failed:
        why = [f"{s} failed: {reasons[s]}" for s in ("preflight", *measuring) if (reasons or {}).get(s)]
        error = "; ".join([*why, f"steps without a result: {', '.join(measuring_failed)}"])
    loader.finish_target_run(engine, trid, measuring_failed, error)
    log.info("loaded results of %s (target_run_id %s); failed steps: %s", target, trid, measuring_failed or "none")
    return {"target": target, "target_run_id": trid, "failed_steps": measuring_failed}


def report(run_id: str, params: dict) -> dict:
    """The report task: print the scorecard, write the run's report.html and scorecard.csv (also when a
    target failed), then fail if any target did. Returns the files and the scorecard rows."""
    from ragbench import report as run_report

    engine = db.connect()
    loader.finish_run(engine, run_id)
    rows = scorecard.scorecard_rows(engine, run_id)
    table = scorecard.format_table(rows)
    for line in table.splitlines():
        log.info("%s", line)
    print(table, flush=True)
    files = run_report.write_report(engine, run_id)
    log.info("report: %s", files.html)
    log.info("scorecard CSV: %s", files.csv)
    wanted = set(params.get("targets") or [])
    missing = wanted - {r["target"] for r in rows}
    failed = [r["target"] for r in rows if r["status"] != "succeeded"] + sorted(missing)
    if failed:
        raise RagbenchError(f"targets failed: {', '.join(failed)} (the scorecard above shows what succeeded; "
                            f"report: {files.html})")
    plain = [{k: (v if isinstance(v, int | float | str | bool | None) else str(v)) for k, v in r.items()}
             for r in rows]
    return {"run_id": run_id, "report_html": str(files.html), "scorecard_csv": str(files.csv), "scorecard": plain}
