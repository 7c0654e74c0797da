"""Run a step on the local target: the workload CLI as a process of the workload environment."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from ragbench import paths
from ragbench.errors import RagbenchError
from ragbench.run_params import default
from ragbench.steps import STEP_BY_NAME, north_south_config

log = logging.getLogger("ragbench.local")


def step_argv(step_name: str, params: dict, endpoint: str | None) -> list[str]:
    """The workload CLI arguments of a step (after the command name)."""
    if step_name in ("deploy", "teardown"):
        return ["--state-dir", str(paths.state_dir())]
    if step_name == "east_west":
        return [arg for flag, name in (("--duration", "ew_duration_s"), ("--streams", "ew_streams"),
                                       ("--samples", "ew_samples"))
                for arg in (flag, str(params.get(name, default(name))))]
    if endpoint is None:
        raise RagbenchError(f"step {step_name} needs the endpoint from the deploy step")
    if step_name == "ingest":
        return ["--endpoint", endpoint]
    if step_name == "north_south":
        return ["--endpoint", endpoint, "--config", json.dumps(north_south_config(params))]
    if step_name == "browser_north_south":
        return ["--endpoint", endpoint, "--requests", str(params.get("browser_requests") or 1),
                "--config", json.dumps(north_south_config(params))]
    raise RagbenchError(f"unknown step {step_name!r}")


def run_step(step_name: str, target: str, run_id: str, params: dict, endpoint: str | None = None) -> dict:
    """Run the step, stream its output to the task log, return a reference to its document."""
    step = STEP_BY_NAME[step_name]
    out = paths.results_dir(run_id, target) / f"{step_name}.json"
    out.unlink(missing_ok=True)
    python = paths.workload_python()
    if not Path(python).exists():
        raise RagbenchError(f"the workload environment is missing ({python}); run `make setup` first")
    argv = [python, "-m", "workload.cli", step.local_command, "--out", str(out),
            *step_argv(step_name, params, endpoint)]
    env = {**os.environ, "RAGBENCH_STATE_DIR": str(paths.state_dir()), "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # never mix the orchestrator's packages into the workload environment
    log.info("running %s", " ".join(argv[:5]))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            cwd=paths.PROJECT_ROOT)
    lines: list[str] = []
    pump = threading.Thread(target=_pump, args=(proc, lines), daemon=True)
    pump.start()
    try:
        rc = proc.wait(timeout=step.timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RagbenchError(f"{step_name} on {target} timed out after {step.timeout_s} s") from None
    pump.join(timeout=5)
    doc = read_document(out) if out.exists() else None
    if rc != 0:
        reason = (doc or {}).get("error") or _last_error(lines) or f"exit code {rc}"
        raise RagbenchError(f"{step_name} on {target} failed: {reason}")
    if doc is None:
        raise RagbenchError(f"{step_name} on {target} wrote no result document")
    return {"step": step_name, "path": str(out), "ok": doc["ok"], "data_keys": sorted(doc["data"])}


def _pump(proc: subprocess.Popen, lines: list[str]) -> None:
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        print(line, file=sys.stderr, flush=True)


def _last_error(lines: list[str]) -> str | None:
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: "):]
    return None


def read_document(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RagbenchError(f"cannot read result document {path}: {exc}") from None
