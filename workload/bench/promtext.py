"""Read a server's own figures from its Prometheus text exposition (e.g. vLLM's ``/metrics``).

Two scrapes around a load window give the server's view of that window: a histogram's mean is
(delta of ``_sum``) / (delta of ``_count``). Samples of one metric with different labels (model,
engine) are added up.
"""

from __future__ import annotations

import math


def totals(text: str) -> dict[str, float]:
    """Every sample's value summed over its label sets, by sample name (``x_sum``, ``x_count``,
    counters, gauges). Histogram buckets (``_bucket``) are left out."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name_end = len(line)
        for i, ch in enumerate(line):
            if ch in "{ ":
                name_end = i
                break
        name = line[:name_end]
        if name.endswith("_bucket"):
            continue
        rest = line[name_end:]
        if rest.startswith("{"):
            close = _label_end(rest)
            if close < 0:
                raise ValueError(f"unterminated labels: {line[:120]!r}")
            rest = rest[close + 1:]
        fields = rest.split()
        if not fields:
            raise ValueError(f"sample without a value: {line[:120]!r}")
        value = float(fields[0])
        if math.isnan(value):
            continue
        out[name] = out.get(name, 0.0) + value
    return out


def _label_end(text: str) -> int:
    """Index of the ``}`` closing the label set that starts at text[0] (quotes may hold braces)."""
    quoted = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "}" and not quoted:
            return i
    return -1


def histogram_mean(before: dict[str, float], after: dict[str, float], name: str) -> tuple[float | None, int]:
    """(mean, count) of the observations a histogram got between two scrapes; mean None if none."""
    count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    n = int(round(count))
    return (total / count if count > 0 else None), n


def delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)
