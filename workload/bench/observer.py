"""A hook around the measured part of every scenario, for telemetry that must cover exactly that window.

``run_north_south(..., observer=...)`` calls ``measure_started`` after the network probe and the
warm-up requests, just before the measured schedule starts, and ``measure_finished`` once the last
measured request has ended, with the window's wall-clock bounds. The keys ``measure_finished``
returns are merged into the scenario's document.
"""

from __future__ import annotations

from typing import Protocol


class ScenarioObserver(Protocol):
    def measure_started(self, scenario: str) -> None:
        """Called just before the measured schedule starts (may block briefly: the load waits)."""

    def measure_finished(self, scenario: str, started_at_epoch: float, ended_at_epoch: float) -> dict:
        """Called after the measured part; the keys returned are merged into the scenario document."""
