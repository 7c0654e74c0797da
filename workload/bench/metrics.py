"""Run-level metrics computed from request records (definitions: docs/metrics.md)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from workload.bench.records import RequestRecord

PERCENTILES = (50, 90, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Percentile by linear interpolation between closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def distribution(values: Iterable[float | None]) -> dict[str, float | int | None]:
    """count, mean, min, max and p50/p90/p95/p99 of the non-None values."""
    vals = [v for v in values if v is not None]
    out: dict[str, float | int | None] = {"count": len(vals)}
    if not vals:
        out.update({"mean": None, "min": None, "max": None})
        out.update({f"p{p}": None for p in PERCENTILES})
        return out
    out["mean"] = sum(vals) / len(vals)
    out["min"] = min(vals)
    out["max"] = max(vals)
    for p in PERCENTILES:
        out[f"p{p}"] = percentile(vals, p)
    return out


@dataclass(frozen=True)
class SLO:
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def met_by(self, r: RequestRecord) -> bool:
        if not r.ok:
            return False
        checks = ((self.ttft_ms, r.ttft_ms), (self.tpot_ms, r.tpot_ms), (self.e2e_ms, r.e2e_ms))
        for limit, value in checks:
            if limit is None:
                continue
            if value is None or value > limit:
                return False
        return True


def summarize(
    records: Sequence[RequestRecord],
    wall_time_s: float,
    slo: SLO = SLO(),
    offered_rate_rps: float | None = None,
) -> dict:
    """Summary of one scenario. Warm-up records are excluded; failures are counted, not dropped."""
    measured = [r for r in records if not r.warmup]
    ok = [r for r in measured if r.ok]
    failed = [r for r in measured if not r.ok]
    n_total = len(measured)
    wall = wall_time_s if wall_time_s > 0 else float("nan")
    out_tokens = sum(r.n_out for r in ok)
    slo_met = sum(1 for r in measured if slo.met_by(r))
    sources = Counter(r.output_tokens_source for r in ok)
    lags = [r.schedule_lag_ms for r in measured if r.schedule_lag_ms is not None]
    achieved_rps = n_total / wall if n_total else 0.0

    summary = {
        "requests": n_total,
        "completed": len(ok),
        "errored": len(failed),
        "error_rate": (len(failed) / n_total) if n_total else 0.0,
        "errors_by_code": dict(Counter(r.error_code for r in failed)),
        "wall_time_s": wall_time_s,
        "output_tokens": out_tokens,
        "output_tokens_per_s": out_tokens / wall if ok else 0.0,
        "requests_per_s": len(ok) / wall if ok else 0.0,
        "token_count_sources": {str(k): v for k, v in sources.items()},
        "ttft_ms": distribution(r.ttft_ms for r in ok),
        "ttft_from_schedule_ms": distribution(r.ttft_from_schedule_ms for r in ok),
        "e2e_ms": distribution(r.e2e_ms for r in ok),
        "tpot_ms": distribution(r.tpot_ms for r in ok),
        "itl_ms": distribution(v for r in ok for v in r.itl_ms),
        "slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "e2e_ms": slo.e2e_ms},
        "slo_attainment": (slo_met / n_total) if n_total else 0.0,
        "goodput_rps": slo_met / wall if n_total else 0.0,
        "schedule_lag_ms": distribution(lags),
        "offered_rate_rps": offered_rate_rps,
        "achieved_rate_rps": achieved_rps,
    }
    summary["valid"], summary["invalid_reason"] = _validity(summary)
    return summary


def _validity(summary: dict) -> tuple[bool, str | None]:
    """A run is invalid when the client fell behind its schedule (a slow client, not a slow cloud)."""
    offered = summary["offered_rate_rps"]
    if offered:
        ratio = summary["achieved_rate_rps"] / offered
        if ratio < 0.95:
            return False, f"achieved/offered rate {ratio:.3f} < 0.95"
    lag_p99 = summary["schedule_lag_ms"]["p99"]
    if lag_p99 is not None and lag_p99 > 10:
        return False, f"p99 schedule lag {lag_p99:.1f} ms > 10 ms"
    return True, None
