"""The scorecard: v_scorecard rows for a run, as a table people read in a terminal or a task log."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

COLUMNS = (
    # (header, v_scorecard column, format)
    ("target", "target", "{}"),
    ("status", "status", "{}"),
    ("ok/req", None, None),
    ("TTFT p50 ms [95% CI]", "ttft_p50_ms", "{:.1f}"),
    ("TTFT p95 ms [95% CI]", "ttft_p95_ms", "{:.1f}"),
    ("prefix hit", "prefix_cache_hit_rate", "{:.0%}"),  # vLLM's prefix-cache hit rate next to TTFT
    ("E2E p50 ms", "e2e_p50_ms", "{:.1f}"),
    ("E2E p95 ms", "e2e_p95_ms", "{:.1f}"),
    ("TPOT p50 ms", "tpot_p50_ms", "{:.2f}"),
    ("out tok/s", "output_tokens_per_s", "{:.1f}"),
    ("req/s", "requests_per_s", "{:.2f}"),
    ("err rate", "error_rate", "{:.1%}"),
    ("E-W Gbit/s", "east_west_gbps", "{:.2f}"),
    ("ingest chunks/s", "ingest_chunks_per_s", "{:.1f}"),
    ("$/1M tok", "usd_per_1m_output_tokens", "{:.3f}"),  # docs/cost-model.md; "-" when not priced
)
# Cells that show their bootstrap 95% interval (v_scorecard <column>_lo / _hi; docs/metrics.md).
WITH_INTERVAL = ("ttft_p50_ms", "ttft_p95_ms")
LOW_CONFIDENCE_MARK = "*"
LOW_CONFIDENCE_NOTE = ("* low confidence: fewer than 10 samples beyond the percentile "
                       "(e.g. p95 from fewer than 200 requests)")
NO_OPERATING_POINT = "sweep: no level met the SLO (no operating point, not priced)"


def latest_run_id(engine: Engine) -> str | None:
    """The newest run's id (None when there is no run)."""
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")).scalar()


def scorecard_rows(engine: Engine, run_id: str | None = None) -> list[dict]:
    """Rows of one run (default: the newest run)."""
    if run_id is None:
        run_id = latest_run_id(engine)
        if run_id is None:
            return []
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM v_scorecard WHERE run_id = :r ORDER BY target"),
                            {"r": run_id}).mappings().all()
    return [dict(r) for r in rows]


def cell(row: dict, column: str | None, fmt: str | None, interval: bool | None = None) -> str:
    """One formatted value: "-" for a missing one, "completed/requests" for the ok/req column; the
    columns of WITH_INTERVAL carry " [lo, hi]" when the row has the interval, and a "*" when the
    percentile is low-confidence."""
    if column is None:
        return f"{row.get('completed') or 0}/{row.get('requests') or 0}"
    value = row.get(column)
    if value is None:
        return "-"
    text = fmt.format(value)
    if interval if interval is not None else column in WITH_INTERVAL:
        lo, hi = row.get(f"{column}_lo"), row.get(f"{column}_hi")
        if lo is not None and hi is not None:
            text += f" [{fmt.format(lo)}, {fmt.format(hi)}]"
        if column in (row.get("low_confidence") or []):
            text += LOW_CONFIDENCE_MARK
    return text


def notes(rows: list[dict]) -> list[str]:
    """What the table cannot say in a cell: failures, invalid results, the sweep's operating point."""
    out = []
    for r in rows:
        if r["status"] == "failed":
            out.append(f"{r['target']} FAILED in {', '.join(r['failed_steps']) or '?'}: {r['error'] or ''}")
        elif r["status"] == "running":
            out.append(f"{r['target']}: still running (its results are not loaded yet)")
        if r.get("valid") is False:
            out.append(f"{r['target']}: north-south result flagged invalid (the client fell behind)")
        if r.get("no_operating_point"):
            out.append(f"{r['target']}: {NO_OPERATING_POINT}")
        elif r.get("operating_point"):
            out.append(f"{r['target']}: sweep operating point {r['scenario']}")
    if any(set(r.get("low_confidence") or []) & set(WITH_INTERVAL) for r in rows):
        out.append(LOW_CONFIDENCE_NOTE)
    return out


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no results)"
    headers = [h for h, _, _ in COLUMNS]
    body = [[cell(r, c, f) for _, c, f in COLUMNS] for r in rows]
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(headers)]
    sep = "-+-".join("-" * w for w in widths)
    lines = [" | ".join(h.ljust(w) for h, w in zip(headers, widths)), sep]
    lines += [" | ".join(v.rjust(w) if i > 1 else v.ljust(w) for i, (v, w) in enumerate(zip(line, widths)))
              for line in body]
    return "\n".join([f"run {rows[0]['run_id']}", *lines, *notes(rows)])
