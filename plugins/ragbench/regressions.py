"""Regression check: each target's headline metrics against the median of its recent earlier runs.

After the loads of a run, every target run with a valid headline scenario is compared metric by
metric (the v_scorecard columns of :data:`METRICS`) with the median of the same target's last
``baseline_runs`` valid earlier runs (status ``succeeded``, headline scenario valid) that measured
the same thing: the same load strategy, ``max_tokens`` and model. A metric needs at least
``min_runs`` (default 3) earlier values; with fewer there is no baseline yet and no row is stored,
so every row of ``v_regressions`` is a real comparison.

Each comparison says which way the metric moved for the user (``worse`` / ``better`` / ``same``:
a higher TTFT is worse, a higher tokens/s better) and is ``flagged`` when it is worse by more than
``threshold_pct`` percent. Rows go to ``regression_checks`` (one per target run and metric);
checking a run again replaces its rows, and gives the same answer, since only runs that started
before it count.
"""

from __future__ import annotations

import json
import logging
import statistics
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

log = logging.getLogger("ragbench.regressions")

DEFAULT_BASELINE_RUNS = 7
MIN_BASELINE_RUNS = 3
DEFAULT_THRESHOLD_PCT = 10.0


@dataclass(frozen=True)
class Metric:
    column: str  # a v_scorecard column
    higher_is_better: bool
    unit: str


METRICS: tuple[Metric, ...] = (
    Metric("ttft_p95_ms", higher_is_better=False, unit="ms"),
    Metric("tpot_p50_ms", higher_is_better=False, unit="ms"),
    Metric("output_tokens_per_s", higher_is_better=True, unit="tok/s"),
    Metric("error_rate", higher_is_better=False, unit=""),
    Metric("usd_per_1m_output_tokens", higher_is_better=False, unit="$"),
    Metric("east_west_gbps", higher_is_better=True, unit="Gbit/s"),
)


@dataclass(frozen=True)
class Check:
    target_run_id: int
    run_id: str
    target: str
    metric: str
    value: float
    baseline_median: float
    baseline_run_ids: tuple[str, ...]
    change_pct: float | None
    threshold_pct: float
    direction: str  # worse | better | same
    flagged: bool

    @property
    def baseline_runs(self) -> int:
        return len(self.baseline_run_ids)

    def describe(self) -> str:
        change = "from 0" if self.change_pct is None else f"{self.change_pct:+.1f}%"
        return (f"REGRESSION {self.target} {self.metric}: {self.value:.6g} vs median {self.baseline_median:.6g} "
                f"of {self.baseline_runs} earlier run(s) ({change}, {self.direction}, threshold "
                f"{self.threshold_pct:g}%) in run {self.run_id}")


@dataclass
class CheckReport:
    run_id: str
    checks: list[Check] = field(default_factory=list)
    not_checked: list[str] = field(default_factory=list)  # why a target or a metric has no row

    @property
    def flagged(self) -> list[Check]:
        return [c for c in self.checks if c.flagged]


def compare(value: float, baseline_median: float, higher_is_better: bool,
            threshold_pct: float) -> tuple[float | None, str, bool]:
    """(change_pct, direction, flagged) of a value against its baseline median."""
    if baseline_median == 0:
        change_pct = 0.0 if value == 0 else None  # no relative change from zero
    else:
        change_pct = (value - baseline_median) / abs(baseline_median) * 100.0
    if value == baseline_median:
        direction = "same"
    else:
        direction = "better" if (value > baseline_median) == higher_is_better else "worse"
    flagged = direction == "worse" and (change_pct is None or abs(change_pct) > threshold_pct)
    return change_pct, direction, flagged


_COLUMNS = ", ".join(f"sc.{m.column}" for m in METRICS)

# One row per target run of a run, with what makes two runs comparable.
_CURRENT = sa.text(f"""
SELECT tr.target_run_id, sc.run_id, sc.target, sc.started_at, sc.status, sc.valid, sc.model_id,
       s.strategy, r.params -> 'max_tokens' AS max_tokens, {_COLUMNS}
FROM v_scorecard sc
JOIN target_runs tr ON tr.run_id = sc.run_id AND tr.target = sc.target
JOIN runs r ON r.run_id = sc.run_id
LEFT JOIN ns_summaries s ON s.target_run_id = tr.target_run_id AND s.scenario = sc.scenario
WHERE sc.run_id = :run_id
ORDER BY sc.target
""")

# The target's last valid, comparable runs that started before this one, newest first.
_BASELINE = sa.text(f"""
SELECT sc.run_id, {_COLUMNS}
FROM v_scorecard sc
JOIN target_runs tr ON tr.run_id = sc.run_id AND tr.target = sc.target
JOIN runs r ON r.run_id = sc.run_id
JOIN ns_summaries s ON s.target_run_id = tr.target_run_id AND s.scenario = sc.scenario
WHERE sc.target = :target AND sc.run_id <> :run_id AND sc.started_at < :started_at
  AND sc.status = 'succeeded' AND sc.valid
  AND s.strategy = CAST(:strategy AS jsonb)
  AND (r.params -> 'max_tokens') IS NOT DISTINCT FROM CAST(:max_tokens AS jsonb)
  AND sc.model_id IS NOT DISTINCT FROM CAST(:model_id AS text)
ORDER BY sc.started_at DESC, sc.run_id DESC
LIMIT :n
""")


def check_run(engine: Engine, run_id: str, threshold_pct: float = DEFAULT_THRESHOLD_PCT,
              baseline_runs: int = DEFAULT_BASELINE_RUNS, min_runs: int = MIN_BASELINE_RUNS) -> CheckReport:
    """Compare every target run of ``run_id`` with its baseline, store the rows, return them."""
    if threshold_pct <= 0 or baseline_runs < 1 or not 1 <= min_runs <= baseline_runs:
        raise ValueError("threshold_pct > 0 and 1 <= min_runs <= baseline_runs are required")
    report = CheckReport(run_id)
    with engine.begin() as conn:
        current = conn.execute(_CURRENT, {"run_id": run_id}).mappings().all()
        for row in current:
            if row["status"] != "succeeded" or not row["valid"]:
                why = "failed" if row["status"] != "succeeded" else "no valid headline scenario"
                report.not_checked.append(f"{row['target']}: not checked ({why})")
                continue
            earlier = conn.execute(_BASELINE, {
                "target": row["target"], "run_id": run_id, "started_at": row["started_at"],
                "strategy": json.dumps(row["strategy"]), "max_tokens": json.dumps(row["max_tokens"]),
                "model_id": row["model_id"], "n": baseline_runs}).mappings().all()
            for metric in METRICS:
                value = row[metric.column]
                if value is None:
                    continue  # not measured or not priced in this run
                values = [(e["run_id"], e[metric.column]) for e in earlier if e[metric.column] is not None]
                if len(values) < min_runs:
                    report.not_checked.append(f"{row['target']} {metric.column}: no baseline yet ({len(values)} "
                                              f"comparable earlier run(s), at least {min_runs} needed)")
                    continue
                median = statistics.median(v for _, v in values)
                change_pct, direction, flagged = compare(value, median, metric.higher_is_better, threshold_pct)
                report.checks.append(Check(row["target_run_id"], run_id, row["target"], metric.column, value,
                                           median, tuple(r for r, _ in values), change_pct, threshold_pct,
                                           direction, flagged))
        _store(conn, [r["target_run_id"] for r in current], report.checks)
    return report


def _store(conn, target_run_ids: list[int], checks: list[Check]) -> None:
    conn.execute(sa.text("DELETE FROM regression_checks WHERE target_run_id = ANY(:ids)"), {"ids": target_run_ids})
    for c in checks:
        conn.execute(sa.text(
            "INSERT INTO regression_checks (target_run_id, metric, value, baseline_median, baseline_runs, "
            " baseline_run_ids, change_pct, threshold_pct, direction, flagged) "
            "VALUES (:id, :metric, :value, :median, :runs, :run_ids, :change, :threshold, :direction, :flagged)"),
            {"id": c.target_run_id, "metric": c.metric, "value": c.value, "median": c.baseline_median,
             "runs": c.baseline_runs, "run_ids": list(c.baseline_run_ids), "change": c.change_pct,
             "threshold": c.threshold_pct, "direction": c.direction, "flagged": c.flagged})


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
