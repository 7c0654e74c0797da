"""How long does `ragbench doctor <target>` take? Target: <= 30 s, "well under a minute" (median).

Each round is a fresh process, as a user or the preflight task meets it: `python -m ragbench.cli
doctor aws-eks`, Airflow's and the Kubernetes client's imports included, through the target's
Airflow connection (an AIRFLOW_CONN_* variable with a kubeconfig) to the stand-in API server of the
tests (tests/preflight/kube_standin.py) on 127.0.0.1, a healthy EKS-like cluster that answers every
request after --latency-ms (a cloud API server's round trip from the orchestrator). Prints each
round, the median, its ratio to the target, and exits non-zero when above it or when a round did
not pass:

    .state/venv-orchestrator/bin/python benchmarks/preflight_time.py [--rounds 3] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT), str(ROOT / "tests" / "preflight")]

import kube_standin  # noqa: E402 - after the path set-up

from ragbench import preflight  # noqa: E402

TARGET_S = 30.0


def one_round(kubeconfig: Path, home: str) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
           "AIRFLOW_HOME": home, "RAGBENCH_STATE_DIR": home,
           "AIRFLOW_CONN_RAGBENCH_AWS_EKS": json.dumps({"conn_type": "kubernetes",
                                                        "extra": {"kube_config_path": str(kubeconfig)}})}
    env.pop("RAGBENCH_CONFIG_DIR", None)  # the shipped targets config
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "ragbench.cli", "doctor", "aws-eks"], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t0
    return elapsed, out.returncode, (out.stdout.strip().splitlines() or [out.stderr.strip()])[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    cluster = kube_standin.healthy_cluster(server_minor=preflight.minor_of(preflight.runner_kubectl_version()))
    cluster.delay_s = args.latency_ms / 1000
    server = kube_standin.StandInServer(cluster).start()
    try:
        with tempfile.TemporaryDirectory(prefix="ragbench-preflight-") as home:
            kubeconfig = kube_standin.write_kubeconfig(Path(home) / "kubeconfig", server.url)
            rounds = []
            for i in range(args.rounds):
                before = len(cluster.requests)
                seconds, rc, last = one_round(kubeconfig, home)
                rounds.append(seconds)
                print(f"round {i + 1}: {seconds:.2f} s, {len(cluster.requests) - before} API requests, "
                      f"exit {rc}: {last}")
                if rc != 0:
                    print("a round did not pass against the healthy stand-in", file=sys.stderr)
                    return 1
    finally:
        server.stop()
    median = statistics.median(rounds)
    print(f"doctor wall time, median of {len(rounds)}: {median:.2f} s at {args.latency_ms:g} ms per API call "
          f"(target <= {TARGET_S:g} s; ratio {median / TARGET_S:.2f})")
    return 0 if median <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
