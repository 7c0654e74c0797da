"""The report page: self-contained HTML (inline CSS and SVG, no scripts, nothing fetched)."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime

from ragbench import scorecard
from ragbench.report.charts import (
    chart_cost,
    chart_distribution,
    chart_east_west,
    chart_percentiles,
    chart_sweep,
    load_level,
    operating_point,
    sweeps,
)
from ragbench.report.data import CSV_NAME, SECTIONS, TABLE_COLUMNS, RunData

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d232b;
background:#f6f7f9}
main{max-width:1240px;margin:0 auto;padding:16px 20px 40px}
header{background:#1d2b3a;color:#fff;padding:14px 20px}
header h1{font-size:20px;margin:0 0 4px}
header .meta{font-size:13px;opacity:.85}
header code{color:#fff}
nav{font-size:13px;margin:10px 0 0}
nav a{color:#1d5fa8;margin-right:14px;text-decoration:none}
section{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 16px;margin:14px 0}
h2{font-size:16px;margin:0 0 8px}
p.note{font-size:12.5px;color:#4a5563;margin:6px 0}
table{border-collapse:collapse;font-size:12.5px;font-variant-numeric:tabular-nums}
th,td{padding:4px 7px;border-bottom:1px solid #e6e9ed;text-align:right;white-space:nowrap}
th{background:#f0f2f5;font-weight:600;white-space:normal;vertical-align:bottom;min-width:44px}
td.text,th.text{text-align:left}
td.err{white-space:normal;text-align:left;max-width:720px;font-family:ui-monospace,monospace;font-size:12px}
.scroll{overflow-x:auto}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}
.succeeded{color:#1a7f37;font-weight:600}.failed{color:#c62828;font-weight:600}.running{color:#9a6700}
figure{margin:6px 0}figure svg{max-width:100%;height:auto}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _table(headers: list[str], rows: list[list[str]], text_columns: int = 1) -> str:
    """A table of already-escaped cells; the first ``text_columns`` are left-aligned."""
    head = "".join(f'<th class="text">{_e(h)}</th>' if i < text_columns else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(c if c.startswith("<td") else f"<td>{c}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _target_cell(data: RunData, target: str) -> str:
    return f'<td class="text"><span class="swatch" style="background:{data.colors[target]}"></span>{_e(target)}</td>'


def _section(key: str, body: str) -> str:
    return f'<section id="{key}"><h2>{_e(SECTIONS[key])}</h2>{body}</section>'


def _figure_or_note(svg: str | None, empty: str, caption: str = "") -> str:
    if svg is None:
        return f'<p class="note">{_e(empty)}</p>'
    cap = f'<p class="note">{_e(caption)}</p>' if caption else ""
    return f"<figure>{svg}</figure>{cap}"


def section_scorecard(data: RunData) -> str:
    headers = [h for h, _, _ in TABLE_COLUMNS]
    rows = []
    for r in data.rows:
        cells = [_target_cell(data, r["target"]), f'<td class="text {_e(r["status"])}">{_e(r["status"])}</td>']
        # every figure with a bootstrap interval shows it (the terminal table only TTFT's, for width)
        cells += [_e(scorecard.cell(r, c, f, interval=c is not None and f"{c}_lo" in r))
                  for _, c, f in TABLE_COLUMNS[2:]]
        rows.append(cells)
    for t in data.missing:
        rows.append([_target_cell(data, t), '<td class="text failed">no results</td>'] +
                    ["-"] * (len(headers) - 2))
    notes = [f"{r['target']}: the North-South result is flagged invalid (the client fell behind)"
             for r in data.rows if r.get("valid") is False]
    notes += [f"{r['target']}: {scorecard.NO_OPERATING_POINT}" for r in data.rows if r.get("no_operating_point")]
    notes += [f"{r['target']}: sweep operating point {r['scenario']}" for r in data.rows
              if r.get("operating_point") and not r.get("no_operating_point")]
    if any(r.get("low_confidence") for r in data.rows):
        notes.append(scorecard.LOW_CONFIDENCE_NOTE)
    notes.append("Figures in brackets: bootstrap 95% intervals from the raw requests (docs/metrics.md).")
    notes += [f"{r['target']}: not priced (no price set for provider {r['provider']} in force at the start)"
              for r in data.rows if r.get("scenario") is not None and r.get("usd_per_hour") is None]
    body = _table(headers, rows, text_columns=2) if rows else '<p class="note">(no results)</p>'
    body += "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    body += (f'<p class="note">From <code>v_scorecard</code>; the headline scenario of each target. '
             f"Every column of the view is in <code>{CSV_NAME}</code> next to this file.</p>")
    return _section("scorecard", body)


def section_failed(data: RunData) -> str:
    rows = [[_target_cell(data, r["target"]), _e(", ".join(r["failed_steps"] or []) or "?"),
             f'<td class="err">{_e(r["error"] or "")}</td>'] for r in data.rows if r["status"] == "failed"]
    rows += [[_target_cell(data, t), "-", '<td class="err">no results were loaded for this target</td>']
             for t in data.missing]
    probe_rows = [[_target_cell(data, t), _e(p["probe"]), f'<td class="err">{_e(p["error"])}</td>']
                  for t, probes in sorted(data.east_west.items()) for p in probes if p["error"] is not None]
    body = _table(["target", "failed steps", "error"], rows, text_columns=3) if rows else \
        '<p class="note">No target failed.</p>'
    if probe_rows:
        body += '<p class="note">East-West probes that failed (the other probes still ran):</p>'
        body += _table(["target", "probe", "error"], probe_rows, text_columns=3)
    running = [r["target"] for r in data.rows if r["status"] == "running"]
    if running:
        body += f'<p class="note">Still running when the report was written: {_e(", ".join(running))}</p>'
    return _section("failed", body)


def _without_ns(data: RunData) -> str:
    names = sorted({r["target"] for r in data.rows if r.get("scenario") is None} | set(data.missing))
    return f"No North-South result: {', '.join(names)}." if names else ""


def section_percentiles(data: RunData) -> str:
    caption = ("Headline scenario of each target (ns_summaries). TTFT: request sent to first token; "
               "TPOT: (E2E - TTFT) / (output tokens - 1). " + _without_ns(data))
    return _section("percentiles", _figure_or_note(chart_percentiles(data), "No North-South result in this run.",
                                                   caption))


def section_distribution(data: RunData) -> str:
    failed = ", ".join(f"{t}: {n}" for t, n in sorted(data.failed_requests.items()))
    caption = ("Every successful measured request of the headline scenario (ns_requests, warm-up excluded). "
               + (f"Failed requests, not drawn: {failed}. " if failed else "") + _without_ns(data))
    return _section("distribution", _figure_or_note(chart_distribution(data),
                                                    "No successful North-South request in this run.", caption))


def section_cost(data: RunData) -> str:
    unpriced = sorted(r["target"] for r in data.with_north_south() if r.get("usd_per_hour") is None)
    caption = ("Output tokens/s of the headline scenario against the cluster's list price per hour "
               "(docs/cost-model.md); $ per 1M output tokens = $/hour x wall time / output tokens. "
               + (f"Not priced: {', '.join(unpriced)}. " if unpriced else ""))
    empty = "No target of this run has both a North-South result and a price. " + \
        (f"Not priced: {', '.join(unpriced)}." if unpriced else "")
    return _section("cost", _figure_or_note(chart_cost(data), empty, caption))


def section_sweep(data: RunData) -> str:
    curves = sweeps(data)
    if not curves:
        return _section("sweep", '<p class="note">This run did not sweep the load (load_mode sweep); '
                                 "each target ran one scenario.</p>")
    rows = []
    for t, sc in curves.items():
        op = operating_point(data, sc)
        for s in sorted(sc, key=lambda s: load_level(s) or 0):
            mark = "operating point" if s is op else ("no level met the SLO (shown, not priced)"
                                                      if s["headline"] and op is None else "")
            rows.append([_target_cell(data, t), _e(f"{load_level(s):g}" if load_level(s) is not None else "?"),
                         _e(scorecard.cell(s, "slo_attainment", "{:.1%}")),
                         _e(scorecard.cell(s, "goodput_rps", "{:.2f}")),
                         _e(scorecard.cell(s, "output_tokens_per_s", "{:.1f}")),
                         _e(scorecard.cell(s, "ttft_p95_ms", "{:.1f}")), f'<td class="text">{_e(mark)}</td>'])
    caption = (f"One scenario per load level. The operating point is the highest valid level whose SLO "
               f"attainment is at least {data.slo_attainment_target:.0%}, chosen once by the load generator and "
               "stored with the scenario; it is the headline scenario the scorecard shows. When no level met "
               "the SLO the lowest level is shown and nothing is priced as the operating point.")
    body = _figure_or_note(chart_sweep(data), "", caption)
    body += _table(["target", "level", "SLO att.", "goodput req/s", "out tok/s", "TTFT p95 ms", ""], rows)
    return _section("sweep", body)


def section_east_west(data: RunData) -> str:
    rows = []
    for t, probes in sorted(data.east_west.items()):
        for p in probes:
            if p["probe"] == "latency":
                mean, lo, hi, unit = (p["latency_p50_ms"], p["latency_p50_ci95_low_ms"],
                                      p["latency_p50_ci95_high_ms"], "ms (p50)")
            else:
                mean, lo, hi, unit = (p["throughput_gbps"], p["throughput_ci95_low_gbps"],
                                      p["throughput_ci95_high_gbps"], "Gbit/s")
            ci = "-" if lo is None or hi is None else f"{lo:.3g} .. {hi:.3g}"
            rows.append([_target_cell(data, t), f'<td class="text">{_e(p["probe"])}</td>', _e(p["samples"]),
                         "-" if mean is None else _e(f"{mean:.3g} {unit}"), _e(ci),
                         f'<td class="text">{_e(p["path"])}{" (cross-node)" if p["cross_node"] else ""}</td>',
                         f'<td class="text">{_e(", ".join(p["flags"] or []))}</td>',
                         f'<td class="err">{_e(p["error"] or "")}</td>'])
    absent = sorted({r["target"] for r in data.rows} - set(data.east_west) | set(data.missing))
    caption = ("iperf3 between two hosts of each target (ew_results): each figure is the mean over samples "
               "with its 95% confidence interval (none from one sample). "
               + (f"No East-West result: {', '.join(absent)}." if absent else ""))
    body = _figure_or_note(chart_east_west(data), "No East-West measurement succeeded in this run. "
                           + (f"No East-West result: {', '.join(absent)}." if absent else ""), caption)
    if rows:
        body += _table(["target", "probe", "samples", "mean", "95% CI", "path", "flags", "error"], rows, 2)
    return _section("east-west", body)


def _when(value) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(value, datetime) else "-"


def render_html(data: RunData) -> str:
    run = data.run
    params = run.get("params") or {}
    keys = ("targets", "load_mode", "requests", "concurrency", "rate_rps", "sweep_levels", "max_tokens",
            "slo_ttft_ms", "slo_tpot_ms", "slo_e2e_ms")
    shown = {k: params[k] for k in keys if k in params}
    meta = (f"run <code>{_e(run['run_id'])}</code> &middot; DAG {_e(run['dag_id'])} ({_e(run.get('run_type'))}) "
            f"&middot; started {_when(run['started_at'])} &middot; finished {_when(run.get('finished_at'))} "
            f"&middot; git {_e((run.get('git_revision') or '-')[:12])}<br>params <code>{_e(json.dumps(shown))}</code>"
            f" &middot; report written {_when(datetime.now(UTC))}")
    nav = "".join(f'<a href="#{k}">{_e(v)}</a>' for k, v in SECTIONS.items())
    sections = (section_scorecard(data), section_failed(data), section_percentiles(data),
                section_distribution(data), section_cost(data), section_sweep(data), section_east_west(data))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>ragbench report: {_e(run['run_id'])}</title><style>{CSS}</style></head><body>"
            f'<header><h1>ragbench report</h1><div class="meta">{meta}</div></header>'
            f'<main><nav>{nav}</nav>{"".join(sections)}</main></body></html>\n')
