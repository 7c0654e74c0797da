"""On simulated histories with no change, the regression check flags <= 2% of checks per quantity;
an injected 20% TTFT regression at 256 requests is caught in >= 90% of trials.

Each trial simulates one target's history: ``DEFAULT_BASELINE_RUNS`` baseline runs and one new
run, all of the same size (32 to 256 measured requests, drawn per trial) and the same noise:

- TTFT and TPOT per request log-normal (TTFT sigma drawn from 0.2-0.5, TPOT sigma 0.1-0.3); E2E is
  TTFT + TPOT x 63 (64 output tokens);
- output tokens/s of a run: 4 requests in flight x 64 tokens / the run's mean E2E (so it carries
  the requests' own noise), times a run-to-run factor (log-normal, sigma 0.01-0.05);
- failed requests binomial, at a rate drawn from 0, 0.1%, 1% and 3% per trial;
- East-West Gbit/s per run log-normal around 5 (sigma 0.01-0.08).

Every quantity of ``ragbench.regressions.QUANTITIES`` is then decided by the same functions the
product calls (``ragbench.regression_stats``) with the default threshold (10%) and level. For
comparison the script also prints how often the earlier check (the run's p95 against the median
of the baseline runs' p95s, 10%) flagged the same histories. The detection trials multiply the new
run's TTFT by 1.2 (its p95 by 20%) at 256 requests. Exits non-zero on a missed target.

    .state/venv-orchestrator/bin/python benchmarks/regression_false_alarm.py [--trials 1000] \\
        [--detection-trials 500] [--seed 13]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "plugins")]

import numpy as np  # noqa: E402

from ragbench import regression_stats as rs  # noqa: E402
from ragbench.regressions import DEFAULT_BASELINE_RUNS, DEFAULT_THRESHOLD_PCT, QUANTITIES  # noqa: E402

FALSE_ALARM_TARGET = 0.02
DETECTION_TARGET = 0.90
TOKENS, CONCURRENCY = 64, 4


def simulate_run(rng: np.random.Generator, n: int, sigma: float, tpot_sigma: float, run_sigma: float,
                 error_rate: float, ew_sigma: float, ttft_scale: float = 1.0) -> dict:
    errors = int(rng.binomial(n, error_rate))
    ok = n - errors
    ttft = rng.lognormal(np.log(200.0), sigma, ok) * ttft_scale
    tpot = rng.lognormal(np.log(20.0), tpot_sigma, ok)
    e2e = ttft + tpot * (TOKENS - 1)
    tokens_per_s = CONCURRENCY * TOKENS / (e2e.mean() / 1000) * rng.lognormal(0.0, run_sigma)
    return {"ttft_ms": ttft, "tpot_ms": tpot, "e2e_ms": e2e, "output_tokens_per_s": tokens_per_s,
            "errors": errors, "requests": n, "east_west_gbps": rng.lognormal(np.log(5.0), ew_sigma)}


def history(rng: np.random.Generator, n: int, sigma: float, ttft_scale: float = 1.0) -> tuple[list[dict], dict]:
    noise = {"sigma": sigma, "tpot_sigma": rng.uniform(0.1, 0.3), "run_sigma": rng.uniform(0.01, 0.05),
             "error_rate": float(rng.choice([0.0, 0.001, 0.01, 0.03])), "ew_sigma": rng.uniform(0.01, 0.08)}
    baseline = [simulate_run(rng, n, **noise) for _ in range(DEFAULT_BASELINE_RUNS)]
    return baseline, simulate_run(rng, n, **noise, ttft_scale=ttft_scale)


def decide(baseline: list[dict], run: dict) -> dict[str, bool]:
    """Flagged or not, per quantity, by the product's decision functions."""
    out = {}
    for q in QUANTITIES:
        if q.kind == "latency":
            pooled = np.concatenate([b[q.source] for b in baseline])
            d = rs.latency_shift(run[q.source], pooled, q.percentile, DEFAULT_THRESHOLD_PCT)
        elif q.kind == "error_rate":
            d = rs.error_rate_rise(run["errors"], run["requests"], sum(b["errors"] for b in baseline),
                                   sum(b["requests"] for b in baseline))
        else:
            d = rs.per_run_change(run[q.source], [b[q.source] for b in baseline], q.higher_is_better,
                                  DEFAULT_THRESHOLD_PCT)
        out[q.metric] = d.flagged
    return out


def old_check(baseline: list[dict], run: dict) -> bool:
    """The earlier TTFT p95 check: the run's p95 against the median of the baseline runs' p95s."""
    median = np.median([np.percentile(b["ttft_ms"], 95) for b in baseline])
    return np.percentile(run["ttft_ms"], 95) > median * (1 + DEFAULT_THRESHOLD_PCT / 100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000, help="no-change histories")
    parser.add_argument("--detection-trials", type=int, default=500, help="histories with a 20%% regression")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.monotonic()

    flags = {q.metric: 0 for q in QUANTITIES}
    old_flags = 0
    for _ in range(args.trials):
        baseline, run = history(rng, int(rng.integers(32, 257)), rng.uniform(0.2, 0.5))
        for metric, flagged in decide(baseline, run).items():
            flags[metric] += flagged
        old_flags += old_check(baseline, run)

    detection_trials = args.detection_trials
    bands = {(0.2, 0.3): [0, 0], (0.3, 0.4): [0, 0], (0.4, 0.5): [0, 0]}
    for _ in range(detection_trials):
        sigma = rng.uniform(0.2, 0.5)
        baseline, run = history(rng, 256, sigma, ttft_scale=1.2)
        band = next(b for b in bands if b[0] <= sigma < b[1] or b[1] == 0.5 and sigma == 0.5)
        bands[band][0] += decide(baseline, run)["ttft_p95_ms"]
        bands[band][1] += 1
    caught = sum(c for c, _ in bands.values())

    print(f"{args.trials} no-change histories ({DEFAULT_BASELINE_RUNS} baseline runs, 32-256 requests, TTFT sigma "
          f"0.2-0.5), threshold {DEFAULT_THRESHOLD_PCT:g}%, alpha {rs.ALPHA:g}:")
    missed = False
    for metric, count in flags.items():
        rate = count / args.trials
        ok = rate <= FALSE_ALARM_TARGET
        missed |= not ok
        print(f"  false alarms {metric:<20} {rate:6.2%}  (target <= {FALSE_ALARM_TARGET:.0%}) "
              f"{'ok' if ok else 'MISSED'}")
    print(f"  for comparison, the earlier median-of-p95s check on TTFT p95: {old_flags / args.trials:6.2%}")
    rate = caught / detection_trials
    ok = rate >= DETECTION_TARGET
    missed |= not ok
    print(f"detection of a 20% TTFT p95 regression at 256 requests ({detection_trials} trials): {rate:6.2%}  "
          f"(target >= {DETECTION_TARGET:.0%}) {'ok' if ok else 'MISSED'}")
    for (lo, hi), (c, n) in bands.items():
        print(f"  TTFT sigma {lo:.1f}-{hi:.1f}: {c}/{n} = {c / max(n, 1):6.2%}")
    print(f"took {time.monotonic() - started:.1f} s")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
