"""Running min/mean/max of a series, in constant memory, and the row every telemetry source reports."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class RunningStats:
    count: int = 0
    total: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    def add(self, value: float) -> None:
        if value is None or math.isnan(value):
            return
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None


def usage_row(source: str, component: str, metric: str, unit: str, stats: RunningStats) -> dict:
    """One (source, component, metric) summary, the shape stored in ``resource_usage``."""
    empty = stats.count == 0
    return {"source": source, "component": component, "metric": metric, "unit": unit,
            "min": None if empty else stats.minimum, "mean": stats.mean,
            "max": None if empty else stats.maximum, "samples": stats.count}
