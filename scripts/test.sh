#!/usr/bin/env bash
# Run the whole test suite: orchestrator-side tests in the orchestrator environment, then the
# workload-side tests in the workload environment. Extra arguments go to both pytest runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${RAGBENCH_STATE_DIR:-$ROOT/.state}"
export RAGBENCH_WORKLOAD_PYTHON="${RAGBENCH_WORKLOAD_PYTHON:-$STATE/venv-workload/bin/python}"
cd "$ROOT"

status=0
echo "== orchestrator environment: tests/ (except tests/workload) =="
"$STATE/venv-orchestrator/bin/python" -m pytest tests --ignore=tests/workload -p no:cacheprovider "$@" || status=$?
echo "== workload environment: tests/workload =="
"$STATE/venv-workload/bin/python" -m pytest tests/workload -p no:cacheprovider "$@" || status=$((status ? status : $?))
exit "$status"
