"""Read a server's own figures from its Prometheus text exposition (e.g. vLLM's ``/metrics``).

Two scrapes around a load window give the server's view of that window: a histogram's mean is
(delta of ``_sum``) / (delta of ``_count``). Samples of one metric with different labels (model,
engine) are added up. ``workload.telemetry.histograms`` reads the same text for whole histograms.
"""

from __future__ import annotations

import math


def totals(text: str) -> dict[str, float]:
    """Every sample's value summed over its label sets, by sample name (``x_sum``, ``x_count``,
    counters, gauges). Histogram buckets (``_bucket``) and NaN values are left out. Malformed
    text raises ValueError (prometheus_client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_bucket") or math.isnan(sample.value):
                continue
            out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def histogram_mean(before: dict[str, float], after: dict[str, float], name: str) -> tuple[float | None, int]:
    """(mean, count) of the observations a histogram got between two scrapes; mean None if none."""
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    n = int(round(count))
    return (total / count if count > 0 else None), n


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)
