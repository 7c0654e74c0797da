"""Regression check: each target run against the raw results of its recent comparable runs.

After the loads of a run, every target run is compared, quantity by quantity (:data:`QUANTITIES`),
with the same target's last ``baseline_runs`` earlier target runs that succeeded and measured the
same thing (:func:`north_south_key`, :func:`east_west_key`). The statistics are pure functions in
:mod:`ragbench.regression_stats`; this module reads their inputs from the database and stores their
decisions:

- latencies (TTFT p95, TPOT p50, E2E p95): the run's raw per-request rows (``ns_requests`` of the
  headline scenario, warm-up and failed requests left out) against the pooled rows of the baseline;
- output tokens/s and East-West Gbit/s: the run's figure against the baseline runs' figures;
- error rate: the run's failed requests against the baseline's pooled failures.

A quantity needs ``min_runs`` (default 3) comparable earlier runs with a value; with fewer there is
no baseline yet and no row is stored, so every row of ``v_regressions`` is a real comparison. Rows
go to ``regression_checks`` (one per target run and quantity) with the test, its p-value, the
effect size, the baseline's size and why the quantity was or was not flagged; checking a run again
replaces its rows and gives the same answer, since only runs that started before it count.
Definitions: docs/metrics.md, "Regressions".
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ragbench import regression_stats as rs
from ragbench.steps import north_south_config

log = logging.getLogger("ragbench.regressions")

DEFAULT_BASELINE_RUNS = 7
MIN_BASELINE_RUNS = 3
DEFAULT_THRESHOLD_PCT = 10.0
# Earlier target runs looked at when searching for comparable ones (newest first): bounds the scan
# over months of nightly history.
SCAN_RUNS = 400


@dataclass(frozen=True)
class Quantity:
    metric: str  # the name stored in regression_checks.metric (a v_scorecard column where one exists)
    kind: str  # latency | per_run | error_rate
    source: str  # latency: the ns_requests column; per_run: the figure's key in a candidate row
    percentile: float | None = None  # latency: the percentile compared
    higher_is_better: bool = False
    unit: str = ""


# One signal per quantity: cost per token is output tokens/s at a fixed price, so it is not checked.
QUANTITIES: tuple[Quantity, ...] = (
    Quantity("ttft_p95_ms", "latency", "ttft_ms", percentile=95, unit="ms"),
    Quantity("tpot_p50_ms", "latency", "tpot_ms", percentile=50, unit="ms"),
    Quantity("e2e_p95_ms", "latency", "e2e_ms", percentile=95, unit="ms"),
    Quantity("output_tokens_per_s", "per_run", "output_tokens_per_s", higher_is_better=True, unit="tok/s"),
    Quantity("error_rate", "error_rate", "error_rate"),
    Quantity("east_west_gbps", "per_run", "east_west_gbps", higher_is_better=True, unit="Gbit/s"),
)


@dataclass(frozen=True)
class Check:
    target_run_id: int
    run_id: str
    target: str
    metric: str
    decision: rs.Decision
    threshold_pct: float
    requests: int | None  # this run's sample size (latency: values; error rate: requests)
    baseline_run_ids: tuple[str, ...]
    baseline_requests: int | None  # pooled sample size of the baseline (latency and error rate)
    comparable_on: dict

    @property
    def flagged(self) -> bool:
        return self.decision.flagged

    @property
    def baseline_runs(self) -> int:
        return len(self.baseline_run_ids)

    def describe(self) -> str:
        d = self.decision
        change = "from 0" if d.change_pct is None else f"{d.change_pct:+.1f}%"
        pooled = f", {self.baseline_requests} requests" if self.baseline_requests else ""
        return (f"REGRESSION {self.target} {self.metric}: {d.value:.6g} vs {d.baseline_value:.6g} over "
                f"{self.baseline_runs} earlier run(s){pooled} ({change}; {d.test}: {d.reason}) in run {self.run_id}")


@dataclass
class CheckReport:
    run_id: str
    checks: list[Check] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)  # why a target or a quantity has no row

    @property
    def flagged(self) -> list[Check]:
        return [c for c in self.checks if c.flagged]


# --- what makes two runs comparable ------------------------------------------------------------

def north_south_key(kind: str, params: dict, model_id: str | None, corpus_version: str | None,
                    strategy: dict | None) -> dict:
    """What a North-South result depends on besides the system under test: where the load came
    from, how much and what kind of load, and what the service answered from. The load level is the
    headline scenario's own strategy (a sweep's operating point is one of its levels); its arrival
    seed is left out (another seed is another sample of the same load)."""
    config = north_south_config(params)  # the load generator's defaults fill in missing params
    vantage = "local" if kind == "local" else params.get("north_south_from", "orchestrator")
    return {
        "vantage": vantage,
        "endpoint_kind": config.get("endpoint_kind"),
        "load_mode": params.get("load_mode", "concurrent"),
        "level": {k: v for k, v in (strategy or {}).items() if k != "seed"},
        "requests": config["stop"]["max_requests"],
        "warmup_requests": config["warmup_requests"],
        "k": config["k"],
        "max_tokens": config["max_tokens"],
        "unique_prompts": config.get("unique_prompts"),
        "cache": config.get("cache"),
        "model": model_id,
        "corpus_version": corpus_version,
    }


def east_west_key(params: dict, path: str | None, cross_node: bool | None) -> dict:
    """What an East-West TCP figure depends on: the network path and the iperf3 settings."""
    return {"path": path, "cross_node": cross_node, "ew_streams": params.get("ew_streams", 1),
            "ew_duration_s": params.get("ew_duration_s", 3), "ew_samples": params.get("ew_samples", 3)}


# --- reading the inputs ------------------------------------------------------------------------

# Target runs with what makes them comparable and their per-run figures.
_TARGET_RUNS = """
SELECT tr.target_run_id, tr.run_id, tr.target, tr.kind, tr.model_id, tr.status, tr.started_at,
       COALESCE(tr.fingerprint -> 'params', r.params) AS params,
       s.scenario, s.strategy, s.valid, s.output_tokens_per_s,
       ir.corpus_version,
       ew.throughput_gbps AS east_west_gbps, ew.path AS ew_path, ew.cross_node AS ew_cross_node
FROM target_runs tr
JOIN runs r ON r.run_id = tr.run_id
LEFT JOIN ns_summaries s ON s.target_run_id = tr.target_run_id AND s.headline
LEFT JOIN ingest_results ir ON ir.target_run_id = tr.target_run_id
LEFT JOIN ew_results ew ON ew.target_run_id = tr.target_run_id AND ew.probe = 'tcp'
"""

_CURRENT = sa.text(_TARGET_RUNS + "WHERE tr.run_id = :run_id ORDER BY tr.target")

# The target's earlier target runs that succeeded, newest first.
_CANDIDATES = sa.text(_TARGET_RUNS + """
WHERE tr.target = :target AND tr.run_id <> :run_id AND tr.started_at < :started_at
  AND tr.status = 'succeeded'
ORDER BY tr.started_at DESC, tr.run_id DESC
LIMIT :scan
""")

# Measured (not warm-up) requests of the headline scenarios of some target runs.
_REQUESTS = sa.text("""
SELECT q.target_run_id, q.ttft_ms, q.tpot_ms, q.e2e_ms,
       (q.error_code IS NULL AND q.t_end_ms IS NOT NULL) AS ok
FROM ns_requests q
JOIN ns_summaries s ON s.target_run_id = q.target_run_id AND s.scenario = q.scenario AND s.headline
WHERE q.target_run_id = ANY(:ids) AND NOT q.warmup
""")


def _ns_key(row) -> dict:
    return north_south_key(row["kind"], row["params"] or {}, row["model_id"], row["corpus_version"],
                           row["strategy"])


def _ew_key(row) -> dict:
    return east_west_key(row["params"] or {}, row["ew_path"], row["ew_cross_node"])


@dataclass
class _Requests:
    """One target run's measured requests: values of successful ones, and failure counts."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    requests: int = 0
    errors: int = 0


def _requests(conn: Connection, ids: list[int]) -> dict[int, _Requests]:
    out: dict[int, _Requests] = defaultdict(_Requests)
    if not ids:
        return out
    for r in conn.execute(_REQUESTS, {"ids": ids}).mappings():
        got = out[r["target_run_id"]]
        got.requests += 1
        if not r["ok"]:
            got.errors += 1
            continue
        for column in ("ttft_ms", "tpot_ms", "e2e_ms"):
            if r[column] is not None:
                got.values[column].append(r[column])
    return out


# --- the check -----------------------------------------------------------------------------------

def check_run(engine: Engine, run_id: str, threshold_pct: float = DEFAULT_THRESHOLD_PCT,
              baseline_runs: int = DEFAULT_BASELINE_RUNS, min_runs: int = MIN_BASELINE_RUNS,
              alpha: float = rs.ALPHA) -> CheckReport:
    """Compare every target run of ``run_id`` with its baseline, store the rows, return them."""
    if threshold_pct <= 0 or baseline_runs < 1 or not 1 <= min_runs <= baseline_runs or not 0 < alpha < 1:
        raise ValueError("threshold_pct > 0, 1 <= min_runs <= baseline_runs and 0 < alpha < 1 are required")
    report = CheckReport(run_id)
    with engine.begin() as conn:
        current = conn.execute(_CURRENT, {"run_id": run_id}).mappings().all()
        for row in current:
            if row["status"] != "succeeded":
                report.not_checked.append(f"{row['target']}: not checked (failed)")
                continue
            candidates = conn.execute(_CANDIDATES, {"target": row["target"], "run_id": run_id,
                                                    "started_at": row["started_at"], "scan": SCAN_RUNS}
                                      ).mappings().all()
            _check_target(conn, row, candidates, report, threshold_pct, baseline_runs, min_runs, alpha)
        _store(conn, [r["target_run_id"] for r in current], report.checks)
    return report


def _check_target(conn: Connection, row, candidates, report: CheckReport, threshold_pct: float,
                  baseline_runs: int, min_runs: int, alpha: float) -> None:
    target = row["target"]
    checks: list[Check] = []

    def add(q: Quantity, decision: rs.Decision, baseline: list, key: dict, requests=None, pooled=None) -> None:
        checks.append(Check(row["target_run_id"], row["run_id"], target, q.metric, decision, threshold_pct,
                            requests, tuple(b["run_id"] for b in baseline), pooled, key))

    def too_few(q: Quantity, found: int) -> bool:
        if found >= min_runs:
            return False
        report.not_checked.append(f"{target} {q.metric}: no baseline yet ({found} comparable earlier run(s), "
                                  f"at least {min_runs} needed)")
        return True

    if row["scenario"] is None or not row["valid"]:
        report.not_checked.append(f"{target}: north-south not checked (no valid headline scenario)")
    else:
        key = _ns_key(row)
        # the last comparable runs with a valid headline scenario
        baseline = [c for c in candidates if c["scenario"] is not None and c["valid"] and _ns_key(c) == key]
        baseline = baseline[:baseline_runs]
        raw = _requests(conn, [row["target_run_id"], *(b["target_run_id"] for b in baseline)])
        mine = raw[row["target_run_id"]]
        for q in QUANTITIES:
            if q.kind == "latency":
                with_values = [b for b in baseline if raw[b["target_run_id"]].values[q.source]]
                if too_few(q, len(with_values)):
                    continue
                x = mine.values[q.source]
                y = [v for b in with_values for v in raw[b["target_run_id"]].values[q.source]]
                if min(len(x), len(y)) < rs.MIN_REQUESTS:
                    report.not_checked.append(f"{target} {q.metric}: {len(x)} measured value(s) in the run, "
                                              f"{len(y)} in the baseline, at least {rs.MIN_REQUESTS} needed on "
                                              f"each side")
                    continue
                add(q, rs.latency_shift(x, y, q.percentile, threshold_pct, alpha), with_values, key, len(x), len(y))
            elif q.kind == "error_rate":
                with_rows = [b for b in baseline if raw[b["target_run_id"]].requests]
                if too_few(q, len(with_rows)) or not mine.requests:
                    continue
                errors = sum(raw[b["target_run_id"]].errors for b in with_rows)
                pooled = sum(raw[b["target_run_id"]].requests for b in with_rows)
                add(q, rs.error_rate_rise(mine.errors, mine.requests, errors, pooled, alpha), with_rows, key,
                    mine.requests, pooled)
            elif q.source == "output_tokens_per_s":
                _per_run(q, row, baseline, key, add, too_few, threshold_pct, alpha)
    # East-West has its own comparability: the path and iperf3 settings, not the North-South load
    q = next(q for q in QUANTITIES if q.metric == "east_west_gbps")
    if row["east_west_gbps"] is not None:
        key = _ew_key(row)
        baseline = [c for c in candidates if _ew_key(c) == key][:baseline_runs]
        _per_run(q, row, baseline, key, add, too_few, threshold_pct, alpha)
    report.checks.extend(checks)


def _per_run(q: Quantity, row, baseline, key, add, too_few, threshold_pct: float, alpha: float) -> None:
    value = row[q.source]
    with_values = [b for b in baseline if b[q.source] is not None and b[q.source] > 0]
    if value is None or value <= 0 or too_few(q, len(with_values)):
        return
    add(q, rs.per_run_change(value, [b[q.source] for b in with_values], q.higher_is_better, threshold_pct, alpha),
        with_values, key)


def _store(conn: Connection, target_run_ids: list[int], checks: list[Check]) -> None:
    conn.execute(sa.text("DELETE FROM regression_checks WHERE target_run_id = ANY(:ids)"), {"ids": target_run_ids})
    for c in checks:
        d = c.decision
        conn.execute(sa.text(
            "INSERT INTO regression_checks (target_run_id, metric, test, value, baseline_value, baseline_runs, "
            " baseline_run_ids, baseline_requests, requests, change_pct, effect_size, effect_unit, min_effect, "
            " threshold_pct, p_value, alpha, direction, flagged, reason, comparable_on) "
            "VALUES (:id, :metric, :test, :value, :base, :runs, :run_ids, :base_req, :req, :change, :effect, "
            " :effect_unit, :min_effect, :threshold, :p, :alpha, :direction, :flagged, :reason, "
            " CAST(:key AS jsonb))"),
            {"id": c.target_run_id, "metric": c.metric, "test": d.test, "value": d.value, "base": d.baseline_value,
             "runs": c.baseline_runs, "run_ids": list(c.baseline_run_ids), "base_req": c.baseline_requests,
             "req": c.requests, "change": d.change_pct, "effect": d.effect_size, "effect_unit": d.effect_unit,
             "min_effect": d.min_effect, "threshold": c.threshold_pct, "p": d.p_value, "alpha": d.alpha,
             "direction": d.direction, "flagged": d.flagged, "reason": d.reason,
             "key": json.dumps(c.comparable_on, sort_keys=True)})


def log_report(report: CheckReport) -> None:
    """One line per flagged regression (a warning), then a summary line."""
    for check in report.flagged:
        log.warning("%s", check.describe())
    for line in report.not_checked:
        log.info("%s", line)
    log.info("regression check of %s: %d comparison(s), %d flagged", report.run_id, len(report.checks),
             len(report.flagged))


def run_check(run_id: str, params: dict) -> dict:
    """The DAG's check_regressions task: check the run with its params, log, store; fail only when
    ``fail_on_regression`` is set and something is flagged (the rows are stored either way)."""
    from ragbench import db
    from ragbench.errors import RagbenchError

    report = check_run(db.connect(), run_id,
                       threshold_pct=float(params.get("regression_threshold_pct", DEFAULT_THRESHOLD_PCT)),
                       baseline_runs=int(params.get("regression_baseline_runs", DEFAULT_BASELINE_RUNS)))
    log_report(report)
    flagged = report.flagged
    if flagged and params.get("fail_on_regression"):
        names = ", ".join(f"{c.target} {c.metric}" for c in flagged)
        raise RagbenchError(f"{len(flagged)} regression(s) flagged: {names} (fail_on_regression is set)")
    return {"run_id": run_id, "checked": len(report.checks), "flagged": [c.describe() for c in flagged]}
