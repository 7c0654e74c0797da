"""What the run report shows, read from the results database, and the scorecard as CSV."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ragbench import paths, scorecard
from ragbench.errors import RagbenchError

HTML_NAME = "report.html"
CSV_NAME = "scorecard.csv"

# The HTML table: the printed scorecard's columns, then the rest of the cost (docs/cost-model.md).
TABLE_COLUMNS = (*scorecard.COLUMNS,
                 ("$/hour", "usd_per_hour", "{:.4f}"),
                 ("$/1k req", "usd_per_1k_requests", "{:.4f}"),
                 ("SLO att.", "slo_attainment", "{:.1%}"),
                 ("priced as of", "cost_as_of", "{}"))

# Section anchors, in page order (the tests and docs/report.md name them).
SECTIONS = {
    "scorecard": "Scorecard",
    "failed": "Failed targets",
    "percentiles": "TTFT and TPOT percentiles",
    "distribution": "Latency distribution",
    "cost": "Throughput and cost",
    "sweep": "Load sweep",
    "east-west": "East-West",
}
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
PROBES = {"tcp": "TCP", "tcp_reverse": "TCP reverse", "udp": "UDP"}  # the throughput probes
CDF_POINTS = 400  # a CDF is drawn through at most this many quantiles (small SVG for big runs)


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    csv: Path


@dataclass
class RunData:
    run: dict
    rows: list[dict]  # v_scorecard, one per target run, by target
    columns: list[str]  # v_scorecard's columns in the view's order
    scenarios: dict[str, list[dict]] = field(default_factory=dict)  # target -> ns_summaries rows
    latencies: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # headline, measured, ok
    failed_requests: dict[str, int] = field(default_factory=dict)  # headline, measured
    east_west: dict[str, list[dict]] = field(default_factory=dict)  # target -> ew_results rows
    missing: list[str] = field(default_factory=list)  # asked for by the run, nothing loaded

    @property
    def colors(self) -> dict[str, str]:
        targets = sorted({r["target"] for r in self.rows} | set(self.missing))
        return {t: PALETTE[i % len(PALETTE)] for i, t in enumerate(targets)}

    @property
    def slo_attainment_target(self) -> float:
        return float((self.run.get("params") or {}).get("slo_attainment_target", 0.95))

    def with_north_south(self) -> list[dict]:
        return [r for r in self.rows if r.get("scenario") is not None]


def run_results_dir(run_id: str) -> Path:
    """``<state>/results/<run>/``: the folder holding each target's result documents."""
    return paths.results_dir(run_id, "report").parent




def fetch(engine: Engine, run_id: str) -> RunData:
    """Everything the report shows, for one run; a run id that does not exist is an error."""
    try:
        return _fetch(engine, run_id)
    except sa.exc.ProgrammingError as exc:  # e.g. a database never migrated: no runs table, no views
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise RagbenchError(f"cannot read the results database ({reason}); run `ragbench db migrate`") from None


def _fetch(engine: Engine, run_id: str) -> RunData:
    with engine.connect() as conn:
        run = conn.execute(sa.text("SELECT * FROM runs WHERE run_id = :r"), {"r": run_id}).mappings().first()
        if run is None:
            latest = conn.execute(sa.text("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")).scalar()
            hint = f"the newest run is {latest!r}" if latest else "the database has no runs"
            raise RagbenchError(f"no run {run_id!r} in the results database ({hint})")
        result = conn.execute(sa.text("SELECT * FROM v_scorecard WHERE run_id = :r ORDER BY target"), {"r": run_id})
        columns = list(result.keys())
        data = RunData(run=dict(run), rows=[dict(r) for r in result.mappings()], columns=columns)
        for r in conn.execute(sa.text(
                "SELECT tr.target, s.scenario, s.headline, s.strategy, s.requests, s.completed, s.valid, "
                " s.slo_attainment, s.goodput_rps, s.output_tokens_per_s, s.requests_per_s, "
                " s.ttft_p50_ms, s.ttft_p90_ms, s.ttft_p95_ms, s.ttft_p99_ms, "
                " s.tpot_p50_ms, s.tpot_p90_ms, s.tpot_p95_ms, s.tpot_p99_ms, "
                " (s.summary ->> 'meets_slo_target')::boolean AS meets_slo_target, s.operating_point, "
                " s.prefix_cache_hit_rate, s.low_confidence, s.ttft_p50_ms_lo, s.ttft_p50_ms_hi, "
                " s.ttft_p95_ms_lo, s.ttft_p95_ms_hi "
                "FROM ns_summaries s JOIN target_runs tr ON tr.target_run_id = s.target_run_id "
                "WHERE tr.run_id = :r ORDER BY tr.target, s.started_at, s.scenario"), {"r": run_id}).mappings():
            data.scenarios.setdefault(r["target"], []).append(dict(r))
        for r in conn.execute(sa.text(
                "SELECT tr.target, r.ttft_ms, r.e2e_ms, r.error_code FROM ns_requests r "
                "JOIN target_runs tr ON tr.target_run_id = r.target_run_id "
                "JOIN ns_summaries s ON s.target_run_id = r.target_run_id AND s.scenario = r.scenario "
                " AND s.headline "
                "WHERE tr.run_id = :r AND NOT r.warmup"), {"r": run_id}):
            if r.error_code is not None:
                data.failed_requests[r.target] = data.failed_requests.get(r.target, 0) + 1
                continue
            lat = data.latencies.setdefault(r.target, {"ttft_ms": [], "e2e_ms": []})
            for key in ("ttft_ms", "e2e_ms"):
                if getattr(r, key) is not None:
                    lat[key].append(getattr(r, key))
        for r in conn.execute(sa.text(
                "SELECT tr.target, ew.probe, ew.samples, ew.path, ew.cross_node, ew.flags, ew.error, "
                " ew.throughput_gbps, ew.throughput_ci95_low_gbps, ew.throughput_ci95_high_gbps, "
                " ew.latency_p50_ms, ew.latency_p50_ci95_low_ms, ew.latency_p50_ci95_high_ms, "
                " ew.latency_p99_ms, ew.latency_p99_ci95_low_ms, ew.latency_p99_ci95_high_ms, "
                " ew.jitter_ms, ew.loss_pct "
                "FROM ew_results ew JOIN target_runs tr ON tr.target_run_id = ew.target_run_id "
                "WHERE tr.run_id = :r ORDER BY tr.target, ew.probe"), {"r": run_id}).mappings():
            data.east_west.setdefault(r["target"], []).append(dict(r))
    wanted = (data.run.get("params") or {}).get("targets") or []
    data.missing = sorted(set(wanted) - {r["target"] for r in data.rows})
    return data




def csv_value(value) -> str:
    """A v_scorecard value as CSV text: empty for NULL, ISO dates, ``;``-joined arrays, exact floats."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    if isinstance(value, float | Decimal):
        return repr(float(value))  # repr round-trips a double exactly
    return str(value)


def scorecard_csv(data: RunData) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(data.columns)
    for row in data.rows:
        writer.writerow([csv_value(row.get(c)) for c in data.columns])
    return out.getvalue()
