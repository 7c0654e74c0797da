"""Percentiles and distribution blocks (count, mean, min, max, p50/p90/p95/p99) of plain numbers."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

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
