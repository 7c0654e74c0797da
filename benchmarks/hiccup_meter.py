"""Hiccup meter: how long the machine itself kept a core from running, with nothing else to blame.

Sleeps 1 ms at a time on one core, above every other task there (SCHED_RR 2: it preempts a load
generator at SCHED_RR 1 or in the normal class at once, and needs microseconds per wake-up), and
prints each wake-up that came more than ``--min-ms`` late as ``<epoch start> <epoch end> <late ms>``.
Such a stall is the host's (a virtual CPU not scheduled, interrupts), not the work of any process
on the core. Exits after ``--seconds``, whatever happens to whoever started it.

    python benchmarks/hiccup_meter.py --core 1 --seconds 60

Without the right to the real-time class it says so on stderr and exits 3: a meter in the normal
class would count the other tasks' work as stalls.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

TICK_S = 0.001
MAX_SECONDS = 3600.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--core", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True, help=f"at most {MAX_SECONDS:g}")
    parser.add_argument("--min-ms", type=float, default=2.0, help="report wake-ups later than this")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.core})
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(2))
    except PermissionError:
        print("hiccup meter: not allowed to use the real-time class", file=sys.stderr)
        return 3
    print("ready", flush=True)
    end = time.monotonic() + min(args.seconds, MAX_SECONDS)
    while (before := time.monotonic()) < end:
        epoch_before = time.time()
        time.sleep(TICK_S)
        late_ms = (time.monotonic() - before - TICK_S) * 1000
        if late_ms > args.min_ms:
            print(f"{epoch_before:.4f} {time.time():.4f} {late_ms:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
