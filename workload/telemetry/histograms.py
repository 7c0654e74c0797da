"""vLLM's server-side latency histograms: scrape /metrics before and after a scenario's measured
part, keep the difference.

The difference of two scrapes is the histogram of exactly the requests served in between (bucket
counts, sum and count are counters). From it: the mean (sum / count) and approximate quantiles by
linear interpolation inside the bucket that holds the quantile, the way PromQL's
``histogram_quantile`` does it. Label sets (vLLM labels by model and engine) are added together.
"""

from __future__ import annotations

import math

# The histograms kept, by kind: the first name the server exposes is used (older vLLM releases
# called the inter-token latency vllm:time_per_output_token_seconds).
HISTOGRAMS: dict[str, tuple[str, ...]] = {
    "ttft": ("vllm:time_to_first_token_seconds",),
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "tpot": ("vllm:request_time_per_output_token_seconds",),
    "e2e": ("vllm:e2e_request_latency_seconds",),
}
QUANTILES = (0.5, 0.9, 0.95, 0.99)


def parse_histograms(text: str) -> dict[str, dict]:
    """Every histogram family in a Prometheus text exposition, label sets summed:
    ``{name: {"buckets": [(le, cumulative count), ...] ascending, ending at +Inf, "sum", "count"}}``."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram":
            continue
        buckets: dict[float, float] = {}
        total = count = 0.0
        for s in family.samples:
            if s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
            elif s.name.endswith("_sum"):
                total += s.value
            elif s.name.endswith("_count"):
                count += s.value
        out[family.name] = {"buckets": sorted(buckets.items()), "sum": total, "count": count}
    return out


def difference(before: dict | None, after: dict) -> dict:
    """after - before for one histogram; a counter reset (the server restarted) keeps ``after``."""
    if not before or after["count"] < before["count"]:
        return dict(after)
    prior = dict(before["buckets"])
    if any(le not in prior for le, _ in after["buckets"]):
        return dict(after)  # other bucket bounds: not the same histogram
    return {"buckets": [(le, c - prior[le]) for le, c in after["buckets"]],
            "sum": after["sum"] - before["sum"], "count": after["count"] - before["count"]}


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of a cumulative histogram by linear interpolation within a bucket; the
    first bucket's lower bound is 0; in the +Inf bucket the highest finite bound is returned."""
    if not buckets or not 0 <= q <= 1:
        return None
    count = buckets[-1][1]
    if count <= 0:
        return None
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for le, cum in buckets:
        if cum >= rank and cum > lower_count:
            if math.isinf(le):
                return lower_bound
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (cum - lower_count)
        lower_bound, lower_count = (le if not math.isinf(le) else lower_bound), cum
    return lower_bound


def summarize(name: str, hist: dict) -> dict:
    """A stored histogram: buckets, sum and count, and mean and quantiles in milliseconds."""
    count = hist["count"]
    row = {"metric": name, "unit": "seconds",
           "buckets": [["+Inf" if math.isinf(le) else le, c] for le, c in hist["buckets"]],
           "sum": hist["sum"], "count": count,
           "mean_ms": hist["sum"] / count * 1000 if count > 0 else None}
    for q in QUANTILES:
        value = quantile(hist["buckets"], q)
        row[f"p{round(q * 100)}_ms"] = None if value is None else value * 1000
    return row


def server_histograms(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict]:
    """{kind: summary} for every kind of :data:`HISTOGRAMS` the server exposes."""
    out = {}
    for kind, names in HISTOGRAMS.items():
        name = next((n for n in names if n in after), None)
        if name is not None:
            out[kind] = summarize(name, difference(before.get(name), after[name]))
    return out
