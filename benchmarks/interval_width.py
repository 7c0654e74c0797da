"""How many requests a nightly run needs for its headline TTFT p95 interval to be narrower than the
regression threshold (10%).

Simulates runs whose TTFT is log-normal with the spread of the local target (sigma 0.14: the demo
run in the README has TTFT p50 357.6 ms and p95 450.1 ms, ln(450.1 / 357.6) / 1.645 = 0.14) and
wider spreads (cloud targets under load), computes each run's bootstrap 95% interval of p95 exactly
as the loader does (ragbench.intervals), and prints the median and 90th-percentile relative width
(hi - lo) / p95 per request count. The figure asked for: the smallest count whose 90th-percentile
width is below the threshold at the local target's sigma, so that nine nights in ten have an
interval narrower than the change the regression check flags. Exits non-zero when the recommended
count (docs/metrics.md) does not meet that.

Run with the orchestrator environment:  .state/venv-orchestrator/bin/python benchmarks/interval_width.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / "plugins")]

import numpy as np  # noqa: E402

from ragbench.intervals import percentile_interval  # noqa: E402

THRESHOLD = 0.10  # the regression threshold (regression_threshold_pct 10)
LOCAL_SIGMA = 0.14
RECOMMENDED = 256  # docs/metrics.md: the nightly request count for the local target
RUNS = 200  # simulated nights per (sigma, count)
COUNTS = (32, 64, 128, 200, 256, 384, 512, 1024, 2048)


def widths(sigma: float, n: int, rng: np.random.Generator) -> np.ndarray:
    out = np.empty(RUNS)
    for i in range(RUNS):
        x = rng.lognormal(np.log(350.0), sigma, n)
        lo, hi = percentile_interval(x, 95, rng, resamples=2000)
        out[i] = (hi - lo) / np.percentile(x, 95)
    return out


def main() -> int:
    rng = np.random.default_rng(20261127)
    print(f"TTFT p95 bootstrap 95% interval width / p95, {RUNS} simulated runs each (median, 90th percentile)")
    print("sigma | " + " | ".join(f"{n:>11}" for n in COUNTS))
    first_ok = {}
    for sigma in (LOCAL_SIGMA, 0.2, 0.3, 0.5):
        row = []
        for n in COUNTS:
            w = widths(sigma, n, rng)
            med, p90 = np.median(w), np.quantile(w, 0.9)
            row.append(f"{med:5.1%} {p90:5.1%}")
            if p90 < THRESHOLD and sigma not in first_ok:
                first_ok[sigma] = n
        print(f"{sigma:5.2f} | " + " | ".join(f"{c:>11}" for c in row))
    for sigma, n in first_ok.items():
        print(f"sigma {sigma:.2f}: {n} requests give an interval narrower than {THRESHOLD:.0%} in 9 runs of 10")
    local = first_ok.get(LOCAL_SIGMA)
    if local is None or local > RECOMMENDED:
        print(f"FAIL: the recommended {RECOMMENDED} requests are not enough at sigma {LOCAL_SIGMA}")
        return 1
    print(f"PASS: {RECOMMENDED} requests (recommended nightly count) >= {local} needed at the local target's sigma")
    return 0


if __name__ == "__main__":
    sys.exit(main())
