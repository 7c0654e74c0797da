"""Was the client able to produce the load it was asked for? (docs/metrics.md, "Validity")

A run is judged only by what the client controls. An open loop is judged by its realised schedule:
how late each request left against the time it was due (schedule lag), and the rate at which it
sent over the scheduled window. The nominal rate is not a yardstick: with random gaps, 32 requests
at 4 req/s span anywhere from about 6 to 10 s, so a perfect client would "miss" it often. A closed
loop is judged by whether it kept its configured concurrency in flight while it was issuing, and
how soon it refilled a slot when a request ended.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from workload.bench.records import RequestRecord
from workload.bench.stats import percentile


@dataclass(frozen=True)
class ValidityRules:
    # Open loop: the tail of the schedule lag may be at most the larger of a floor (below it the
    # lag is timer and scheduler noise, a small part of any latency measured) and a share of the
    # mean scheduled gap (a lag that long reshapes the arrival process).
    lag_p99_floor_ms: float = 10.0
    lag_p99_max_share_of_gap: float = 0.1
    # Open loop: sending over the window the schedule spans must keep up with the schedule itself.
    min_send_rate_ratio: float = 0.95
    # Closed loop: mean requests in flight, while the client is still issuing, over the concurrency;
    # only held against the client when it was also slow to refill a freed slot (p99 over the
    # floor): requests that fail at once leave slots empty for a moment, through no fault of its own.
    min_inflight_ratio: float = 0.95


RULES = ValidityRules()


def validity(measured: Sequence[RequestRecord], concurrency: int | None = None,
             rules: ValidityRules = RULES) -> dict:
    """The verdict and the figures it used: ``valid``, ``invalid_reason``, ``mode`` (``open_loop``,
    ``closed_loop`` or ``none`` when there is nothing to judge) and the mode's figures."""
    scheduled = [r for r in measured if r.t_scheduled is not None and r.t_sent is not None]
    if scheduled:
        return _open_loop(scheduled, rules)
    if concurrency is not None and measured:
        return _closed_loop(measured, concurrency, rules)
    return {"mode": "none", "valid": True, "invalid_reason": None}


def _open_loop(records: list[RequestRecord], rules: ValidityRules) -> dict:
    lags = [(r.t_sent - r.t_scheduled) * 1000 for r in records]
    sched = sorted(r.t_scheduled for r in records)
    sent = sorted(r.t_sent for r in records)
    n = len(records)
    span_s = sched[-1] - sched[0]
    gap_ms = span_s * 1000 / (n - 1) if n > 1 and span_s > 0 else None
    lag_p50, lag_p99 = percentile(lags, 50), percentile(lags, 99)
    lag_limit = max(rules.lag_p99_floor_ms, rules.lag_p99_max_share_of_gap * gap_ms if gap_ms else 0.0)
    # Rates over the window from the first to the last send (n - 1 gaps): the schedule's own rate,
    # and the rate the client achieved sending the same requests.
    sched_rate = (n - 1) / span_s if gap_ms else None
    sent_span_s = sent[-1] - sent[0]
    send_rate = (n - 1) / sent_span_s if n > 1 and sent_span_s > 0 else None
    ratio = send_rate / sched_rate if send_rate and sched_rate else None
    out = {
        "mode": "open_loop",
        "requests": n,
        "schedule_lag_p50_ms": lag_p50,
        "schedule_lag_p99_ms": lag_p99,
        "schedule_lag_max_ms": max(lags),
        "mean_scheduled_gap_ms": gap_ms,
        "schedule_lag_p99_share_of_gap": lag_p99 / gap_ms if gap_ms else None,
        "schedule_lag_p99_limit_ms": lag_limit,
        "scheduled_rate_rps": sched_rate,
        "achieved_send_rate_rps": send_rate,
        "send_rate_ratio": ratio,
        "rules": asdict(rules),
    }
    reason = None
    if lag_p99 > lag_limit:
        share = f" ({out['schedule_lag_p99_share_of_gap']:.2f} of the mean gap)" if gap_ms else ""
        reason = f"p99 schedule lag {lag_p99:.1f} ms{share} > {lag_limit:.1f} ms"
    elif ratio is not None and ratio < rules.min_send_rate_ratio:
        reason = (f"sent at {ratio:.3f} of the scheduled rate over the scheduled window "
                  f"< {rules.min_send_rate_ratio}")
    return {**out, "valid": reason is None, "invalid_reason": reason}


def _closed_loop(records: Sequence[RequestRecord], concurrency: int, rules: ValidityRules) -> dict:
    sends = [r.t_sent for r in records if r.t_sent is not None]
    out: dict = {"mode": "closed_loop", "requests": len(records), "concurrency": concurrency,
                 "issuing_window_s": None, "mean_in_flight": None, "in_flight_ratio": None,
                 "refill_delay_p50_ms": None, "refill_delay_p99_ms": None, "rules": asdict(rules)}
    if len(sends) <= concurrency:  # every request left at once: nothing the client could lose
        return {**out, "valid": True, "invalid_reason": None}
    t0, t1 = min(sends), max(sends)
    if t1 <= t0:
        return {**out, "valid": True, "invalid_reason": None}
    # Time-weighted mean of requests in flight over [first send, last send]: a client that is slow
    # to send the next request after one ends leaves a slot empty for that long.
    busy = 0.0
    for r in records:
        if r.t_sent is None:
            continue
        end = r.t_end if r.t_end is not None else t1
        busy += max(0.0, min(end, t1) - max(r.t_sent, t0))
    mean = busy / (t1 - t0)
    ratio = mean / concurrency
    # Refill delay: the (concurrency + k)-th send fills the slot the k-th request to end freed.
    sends_sorted = sorted(sends)
    ends = sorted(r.t_end for r in records if r.t_end is not None)
    refills = [(s - e) * 1000 for s, e in zip(sends_sorted[concurrency:], ends)]
    refill_p50 = percentile(refills, 50) if refills else None
    refill_p99 = percentile(refills, 99) if refills else None
    out.update(issuing_window_s=t1 - t0, mean_in_flight=mean, in_flight_ratio=ratio,
               refill_delay_p50_ms=refill_p50, refill_delay_p99_ms=refill_p99)
    reason = None
    if ratio < rules.min_inflight_ratio and refill_p99 is not None and refill_p99 > rules.lag_p99_floor_ms:
        reason = (f"kept {mean:.2f} requests in flight of the configured {concurrency} "
                  f"({ratio:.3f} < {rules.min_inflight_ratio}; p99 refill delay {refill_p99:.1f} ms "
                  f"> {rules.lag_p99_floor_ms:.1f} ms)")
    return {**out, "valid": reason is None, "invalid_reason": reason}
