"""Run-level metrics computed from request records (definitions: docs/metrics.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from workload.bench.records import RequestRecord
from workload.bench.summary import NorthSouthSummary
from workload.bench.stats import PERCENTILES, distribution, percentile  # noqa: F401 - re-exported
from workload.bench.validity import validity

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


def client_server_ttft(records: Sequence[RequestRecord]) -> dict:
    """Distribution of client TTFT minus the server's ``timings.ttft_ms`` over the measured ok
    records whose ``done`` event carries the same request_id as their ``meta`` (the join key).

    ``unpaired`` counts measured ok records without a usable pair (no server TTFT, a missing id);
    the difference is the network plus everything outside the server's own clock (proxies, the
    HTTP layers on both sides, the client)."""
    ok = [r for r in records if not r.warmup and r.ok]
    values = [r.client_minus_server_ttft_ms for r in ok]
    out = distribution(values)
    out["unpaired"] = sum(1 for v in values if v is None)
    return out


def network_rtt(connect_samples_ms: Sequence[float] | None, connect_errors: int = 0,
                in_run_ms: Iterable[float | None] = ()) -> dict:
    """TCP connect times to the endpoint: samples taken before the load, and the connects the
    client made during the run (requests that opened a new connection)."""
    samples = [round(v, 4) for v in connect_samples_ms or []]
    return {"before_load_ms": distribution(samples), "before_load_errors": connect_errors,
            "before_load_samples_ms": samples, "during_run_ms": distribution(in_run_ms)}


def summarize(
    records: Sequence[RequestRecord],
    wall_time_s: float,
    slo: SLO = SLO(),
    offered_rate_rps: float | None = None,
    connect_samples_ms: Sequence[float] | None = None,
    connect_errors: int = 0,
    concurrency: int | None = None,
) -> NorthSouthSummary:
    """Summary of one scenario. Warm-up records are excluded; failures are counted, not dropped.

    ``connect_samples_ms`` are TCP connect times to the endpoint taken before the load
    (``netprobe``); with them the summary reports TTFT p50 with one network round trip removed.
    ``concurrency`` is a closed loop's configured number in flight (its validity check)."""
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
        "tokens_per_event": distribution(n for r in ok for n in r.tokens_per_event),
        "slo": {"ttft_ms": slo.ttft_ms, "tpot_ms": slo.tpot_ms, "e2e_ms": slo.e2e_ms},
        "slo_attainment": (slo_met / n_total) if n_total else 0.0,
        "goodput_rps": slo_met / wall if n_total else 0.0,
        "schedule_lag_ms": distribution(lags),
        "client_minus_server_ttft_ms": client_server_ttft(records),
        "tcp_connect": network_rtt(connect_samples_ms, connect_errors, (r.connect_ms for r in measured)),
        "offered_rate_rps": offered_rate_rps,
        "achieved_rate_rps": achieved_rps,
    }
    rtt_p50 = summary["tcp_connect"]["before_load_ms"]["p50"]
    ttft_p50 = summary["ttft_ms"]["p50"]
    summary["ttft_p50_minus_rtt_ms"] = None if rtt_p50 is None or ttft_p50 is None else ttft_p50 - rtt_p50
    summary["validity"] = validity(measured, concurrency)
    summary["valid"] = summary["validity"]["valid"]
    summary["invalid_reason"] = summary["validity"]["invalid_reason"]
    return NorthSouthSummary.model_validate(summary)
