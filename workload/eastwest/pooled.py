"""East-West figures pooled over samples: a percentile of every round trip of every sample (not a
mean of per-sample percentiles, which understates a tail that shows in one sample only), and UDP
loss as lost over sent packets summed over samples (not a mean of per-sample percentages, which
weighs a short sample like a long one).

Intervals (95 %): a percentile's is distribution-free, between the order statistics whose ranks
bound the binomial count of values below it (normal approximation; round trips are treated as
independent, which back-to-back round trips on one connection only approximate); loss's is
Wilson's score interval over the packets. Standard library only (the light-client rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from workload.bench.metrics import percentile

Z95 = 1.959964


def pooled_percentile(values: Sequence[float], q: float, samples: int) -> dict:
    """The ``q``-th percentile (0-100, linear interpolation) of all ``values`` pooled from
    ``samples`` samples: ``{"value", "n", "round_trips", "ci95_low", "ci95_high", "method"}``
    (``n`` is the number of samples, as for the per-sample means of the other figures)."""
    out = {"value": None, "n": samples, "round_trips": len(values), "ci95_low": None, "ci95_high": None,
           "method": "pooled"}
    if not values:
        return out
    ordered = sorted(values)
    count, p = len(ordered), q / 100
    out["value"] = percentile(ordered, q)
    half = Z95 * math.sqrt(count * p * (1 - p))
    low, high = math.floor(count * p - half), math.ceil(count * p + half)
    if low >= 1 and high <= count:  # else too few values for this tail: no interval
        out["ci95_low"], out["ci95_high"] = ordered[low - 1], ordered[high - 1]
    return out


def pooled_mean(values: Sequence[float], samples: int) -> dict:
    out = {"value": None, "n": samples, "round_trips": len(values), "method": "pooled"}
    if values:
        out["value"] = sum(values) / len(values)
    return out


def pooled_loss_pct(lost: int, packets: int, samples: int) -> dict:
    """Loss in percent of the packets summed over samples, with Wilson's 95 % interval."""
    out = {"value": None, "n": samples, "lost_packets": lost, "packets": packets, "ci95_low": None,
           "ci95_high": None, "method": "pooled"}
    if packets <= 0:
        return out
    p, z2 = lost / packets, Z95 ** 2
    centre = (p + z2 / (2 * packets)) / (1 + z2 / packets)
    half = Z95 * math.sqrt(p * (1 - p) / packets + z2 / (4 * packets ** 2)) / (1 + z2 / packets)
    out.update(value=100 * p, ci95_low=100 * max(0.0, centre - half), ci95_high=100 * min(1.0, centre + half))
    return out
