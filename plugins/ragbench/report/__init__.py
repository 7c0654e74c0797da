"""The run report: one self-contained HTML file (inline SVG charts, no network, no scripts) and the
scorecard as CSV, written next to the run's result documents. Sections: docs/report.md.

Everything comes from the results database: ``v_scorecard`` (the table and the CSV), ``ns_summaries``
(percentiles, sweep curves), ``ns_requests`` of the headline scenario (latency distributions) and
``ew_results`` (East-West). Charts are drawn with matplotlib's SVG backend, without pyplot.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from ragbench.report.data import (
    CSV_NAME,
    HTML_NAME,
    SECTIONS,
    TABLE_COLUMNS,
    ReportFiles,
    RunData,
    csv_value,
    fetch,
    run_results_dir,
    scorecard_csv,
)
from ragbench.report.page import render_html

__all__ = ["CSV_NAME", "HTML_NAME", "SECTIONS", "TABLE_COLUMNS", "ReportFiles", "RunData", "csv_value", "fetch",
           "render_html", "run_results_dir", "scorecard_csv", "write_report"]


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_report(engine: Engine, run_id: str, out_dir: Path | None = None) -> ReportFiles:
    """Write ``report.html`` and ``scorecard.csv`` of a run (default folder: the run's results folder)."""
    data = fetch(engine, run_id)
    folder = Path(out_dir) if out_dir is not None else run_results_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(html=folder / HTML_NAME, csv=folder / CSV_NAME)
    _write(files.csv, scorecard_csv(data))
    _write(files.html, render_html(data))
    return files
