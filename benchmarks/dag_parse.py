"""How long does Airflow take to parse dags/? Target: <= 1 s (median of several rounds).

Each round is a fresh Python process, as the DAG processor parses a file in a process of its own:
Airflow itself is imported first (not timed), then a DagBag of dags/ is built with the shipped
targets config (config/targets.yaml, which lists cluster targets), and that is timed. Prints the
median, the ratio to the target, and exits non-zero when above it:

    .state/venv-orchestrator/bin/python benchmarks/dag_parse.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 1.0

# One round, in a child process: import Airflow, then time the DagBag of dags/.
_ROUND = """
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - t0
print(json.dumps({"seconds": elapsed, "dags": sorted(bag.dag_ids), "errors": {str(k): v for k, v in
                  bag.import_errors.items()}, "tasks": sum(len(d.tasks) for d in bag.dags.values())}))
"""


def one_round(home: str) -> dict:
    env = {**os.environ, "AIRFLOW_HOME": home, "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"), "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins")}
    env.pop("RAGBENCH_CONFIG_DIR", None)  # the shipped targets config
    out = subprocess.run([sys.executable, "-c", _ROUND, str(ROOT / "dags")], env=env, capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"a parse round failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ragbench-dag-parse-") as home:
        rounds = [one_round(home) for _ in range(args.rounds)]
    if rounds[0]["errors"]:
        print(f"import errors: {json.dumps(rounds[0]['errors'], indent=2)}", file=sys.stderr)
        return 1
    seconds = [r["seconds"] for r in rounds]
    median = statistics.median(seconds)
    print(f"dags: {', '.join(rounds[0]['dags'])} ({rounds[0]['tasks']} tasks)")
    print(f"rounds (s): {', '.join(f'{s:.3f}' for s in seconds)}")
    print(f"DAG parse time: median {median:.3f} s = {median / TARGET_S:.2f} x the {TARGET_S:g} s target "
          f"({'met' if median <= TARGET_S else 'MISSED'})")
    return 0 if median <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
