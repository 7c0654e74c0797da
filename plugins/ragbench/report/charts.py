"""The report's charts: matplotlib figures rendered to inline SVG (no pyplot, no files)."""

from __future__ import annotations

import io
import re

from ragbench.report.data import CDF_POINTS, PROBES, RunData


def _mpl():
    """matplotlib, configured for small, text-as-text SVG (imported only when a report is drawn)."""
    import matplotlib

    matplotlib.rcParams.update({
        "svg.fonttype": "none", "font.family": "sans-serif", "font.size": 9, "axes.titlesize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
        "legend.fontsize": 8, "legend.frameon": False,
    })
    from matplotlib.figure import Figure

    return Figure


def _figure(panels: int, height: float = 2.9):
    Figure = _mpl()
    fig = Figure(figsize=(5.2 * panels, height), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    return fig, list(axes)


def _svg(fig) -> str:
    """The figure as an inline <svg>: no XML prolog, no metadata, no namespace URLs (HTML5 needs none)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    return re.sub(r"<svg ", '<svg role="img" ', text, count=1)


def _f(value) -> float:
    """A figure for matplotlib: NULL becomes NaN (not drawn)."""
    return float("nan") if value is None else float(value)


def _bar_group(ax, labels: list[str], series: list[tuple[str, list, str]], errors: list | None = None) -> None:
    """Grouped bars: one group per label, one bar per (name, values, color) of series."""
    n = max(len(series), 1)
    width = 0.8 / n
    for i, (name, values, color) in enumerate(series):
        xs = [x + (i - (n - 1) / 2) * width for x in range(len(labels))]
        ys = [_f(v) for v in values]
        yerr = errors[i] if errors else None
        ax.bar(xs, ys, width=width * 0.92, color=color, label=name, yerr=yerr, capsize=3 if yerr else 0,
               error_kw={"elinewidth": 1, "ecolor": "#333"})
    ax.set_xticks(range(len(labels)), labels)
    ax.grid(axis="x", visible=False)


def chart_percentiles(data: RunData) -> str | None:
    headline = {t: next((s for s in sc if s["headline"]), None) for t, sc in data.scenarios.items()}
    targets = [t for t, s in sorted(headline.items()) if s is not None]
    if not targets:
        return None
    fig, (ttft, tpot) = _figure(2)
    labels = ["p50", "p90", "p95", "p99"]
    for ax, metric, title in ((ttft, "ttft", "TTFT (ms)"), (tpot, "tpot", "TPOT (ms per output token)")):
        series = [(t, [headline[t][f"{metric}_{p}_ms"] for p in labels], data.colors[t]) for t in targets]
        _bar_group(ax, labels, series)
        ax.set_title(title)
        ax.set_ylabel("ms")
    ttft.legend()
    return _svg(fig)


def _cdf(values: list[float]) -> tuple[list[float], list[float]]:
    import numpy as np

    v = np.sort(np.asarray(values, dtype=float))
    if len(v) <= CDF_POINTS:
        return v.tolist(), (np.arange(1, len(v) + 1) / len(v)).tolist()
    q = np.linspace(0, 1, CDF_POINTS)
    return np.quantile(v, q).tolist(), q.tolist()


def chart_distribution(data: RunData) -> str | None:
    targets = sorted(t for t, lat in data.latencies.items() if lat["ttft_ms"] or lat["e2e_ms"])
    if not targets:
        return None
    fig, axes = _figure(2)
    for ax, key, title in zip(axes, ("ttft_ms", "e2e_ms"), ("TTFT", "E2E latency"), strict=True):
        for t in targets:
            values = data.latencies[t][key]
            if values:
                xs, ys = _cdf(values)
                ax.step(xs, ys, where="post", color=data.colors[t], label=f"{t} (n={len(values)})")
        ax.set_title(f"{title}: cumulative share of requests")
        ax.set_xlabel("ms")
        ax.set_ylim(0, 1.02)
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
        ax.legend(loc="lower right")
    return _svg(fig)


def chart_cost(data: RunData) -> str | None:
    priced = [r for r in data.with_north_south() if r.get("usd_per_hour") is not None]
    if not priced:
        return None
    fig, (scatter, bars) = _figure(2)
    for r in priced:
        color = data.colors[r["target"]]
        scatter.scatter([r["usd_per_hour"]], [r["output_tokens_per_s"]], s=60, color=color, label=r["target"],
                        zorder=3)
        per_m = r.get("usd_per_1m_output_tokens")
        note = f"  ${per_m:.3f}/1M tok" if per_m is not None else ""
        scatter.annotate(f"{r['target']}{note}", (r["usd_per_hour"], r["output_tokens_per_s"]),
                         textcoords="offset points", xytext=(6, 4), fontsize=8)
    scatter.set_xlabel("cluster $/hour")
    scatter.set_ylabel("output tokens/s")
    scatter.set_title("Throughput vs price")
    scatter.set_xlim(left=0, right=max(r["usd_per_hour"] for r in priced) * 1.7 or 1)  # room for the labels
    scatter.set_ylim(bottom=0, top=max(r["output_tokens_per_s"] or 0 for r in priced) * 1.25 or 1)
    names = [r["target"] for r in priced]
    values = [r.get("usd_per_1m_output_tokens") for r in priced]
    bars.barh(names, [_f(v) for v in values],
              color=[data.colors[n] for n in names])
    for i, v in enumerate(values):
        bars.annotate("-" if v is None else f"${v:.3f}", (0 if v is None else v, i), textcoords="offset points",
                      xytext=(4, -3), fontsize=8)
    bars.set_title("$ per 1M output tokens (headline scenario)")
    bars.set_xlabel("USD")
    bars.grid(axis="y", visible=False)
    bars.invert_yaxis()
    return _svg(fig)


def sweeps(data: RunData) -> dict[str, list[dict]]:
    """Targets whose North-South step swept the load: more than one load-generator scenario (one per
    level). The browser vantage point's scenario is not a load level."""
    out = {}
    for t, scenarios in sorted(data.scenarios.items()):
        sc = [s for s in scenarios if (s.get("strategy") or {}).get("type") != "browser"]
        if len(sc) > 1 or any(s["scenario"].startswith("sweep-") for s in sc):
            out[t] = sc
    return out


def load_level(scenario: dict) -> float | None:
    strategy = scenario.get("strategy") or {}
    return strategy.get("concurrency", strategy.get("rate_rps"))


def operating_point(data: RunData, scenarios: list[dict]) -> dict | None:
    """The sweep's operating point as stored with its scenario (ns_summaries.operating_point: chosen
    by the load generator); None when no level met the SLO target."""
    return next((s for s in scenarios if s.get("operating_point")), None)


def chart_sweep(data: RunData) -> str | None:
    curves = sweeps(data)
    if not curves:
        return None
    fig, (att, ttft) = _figure(2)
    closed = all("concurrency" in (s.get("strategy") or {}) for sc in curves.values() for s in sc)
    for t, sc in curves.items():
        pts = sorted((s for s in sc if load_level(s) is not None), key=load_level)
        xs = [load_level(s) for s in pts]
        color = data.colors[t]
        att.plot(xs, [_f(s["slo_attainment"]) for s in pts], marker="o", color=color, label=t)
        ttft.plot(xs, [_f(s["ttft_p95_ms"]) for s in pts], marker="o", color=color, label=t)
        op = operating_point(data, sc)
        if op is not None:
            for ax, y in ((att, op["slo_attainment"]), (ttft, op["ttft_p95_ms"])):
                ax.scatter([load_level(op)], [_f(y)], s=220, facecolors="none", edgecolors=color, linewidths=2,
                           zorder=4)
                ax.annotate("operating point", (load_level(op), _f(y)), textcoords="offset points", xytext=(8, 8),
                            fontsize=8, color=color)
    att.axhline(data.slo_attainment_target, color="#555", linestyle="--", linewidth=1,
                label=f"target {data.slo_attainment_target:.0%}")
    att.set_ylim(0, 1.05)
    att.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    att.set_title("SLO attainment per load level")
    ttft.set_title("TTFT p95 per load level")
    ttft.set_ylabel("ms")
    for ax in (att, ttft):
        ax.set_xlabel("concurrency" if closed else "load level")
        ax.set_xscale("log", base=2)
        levels = sorted({load_level(s) for sc in curves.values() for s in sc if load_level(s) is not None})
        ax.set_xticks(levels, [f"{v:g}" for v in levels])
        ax.minorticks_off()
    att.legend(loc="lower left")
    return _svg(fig)


def _ci(value, low, high) -> tuple[float, float]:
    if value is None or low is None or high is None:
        return 0.0, 0.0
    return max(value - low, 0.0), max(high - value, 0.0)


def chart_east_west(data: RunData) -> str | None:
    measured = {t: {p["probe"]: p for p in probes if p["error"] is None} for t, probes in data.east_west.items()}
    measured = {t: probes for t, probes in sorted(measured.items()) if probes}
    if not measured:
        return None
    has_latency = any("latency" in probes for probes in measured.values())
    shown = [p for p in PROBES if any(p in probes for probes in measured.values())]
    fig, axes = _figure(2 if has_latency and shown else 1)
    series, errors = [], []
    for t, probes in measured.items():
        values, err = [], ([], [])
        for probe in shown:
            p = probes.get(probe) or {}
            values.append(p.get("throughput_gbps"))
            lo, hi = _ci(p.get("throughput_gbps"), p.get("throughput_ci95_low_gbps"),
                         p.get("throughput_ci95_high_gbps"))
            err[0].append(lo)
            err[1].append(hi)
        series.append((t, values, data.colors[t]))
        errors.append([list(err[0]), list(err[1])])
    if shown:
        _bar_group(axes[0], [PROBES[p] for p in shown], series, errors)
        axes[0].set_title("Throughput per probe (mean, 95% CI)")
        axes[0].set_ylabel("Gbit/s")
        axes[0].legend()
    if has_latency:
        series, errors = [], []
        for t, probes in measured.items():
            p = probes.get("latency") or {}
            series.append((t, [p.get("latency_p50_ms"), p.get("latency_p99_ms")], data.colors[t]))
            e50 = _ci(p.get("latency_p50_ms"), p.get("latency_p50_ci95_low_ms"), p.get("latency_p50_ci95_high_ms"))
            e99 = _ci(p.get("latency_p99_ms"), p.get("latency_p99_ci95_low_ms"), p.get("latency_p99_ci95_high_ms"))
            errors.append([[e50[0], e99[0]], [e50[1], e99[1]]])
        _bar_group(axes[-1], ["p50", "p99"], series, errors)
        if not shown:
            axes[-1].legend()
        axes[-1].set_title("Request/response round trip (mean over samples, 95% CI)")
        axes[-1].set_ylabel("ms")
    return _svg(fig)
