"""The benchmark's steps, defined once: a plain list rendered into tasks per target kind.

Each step is a command of the workload CLI that writes one JSON result document. The local
renderer runs it as a process with the workload environment's Python; a cluster renderer runs the
same command in a pod.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    name: str  # the document's step name, also the key of its result
    task_id: str  # verb_noun
    local_command: str  # workload CLI command on the local target
    timeout_s: int  # execution timeout of the task
    is_teardown: bool = False


STEPS: tuple[Step, ...] = (
    Step("deploy", "deploy_workload", "deploy-local", timeout_s=1800),
    Step("ingest", "ingest_corpus", "ingest", timeout_s=1800),
    Step("north_south", "run_north_south", "north-south", timeout_s=3600),
    Step("east_west", "run_east_west", "east-west", timeout_s=900),
    Step("teardown", "teardown_workload", "teardown-local", timeout_s=300, is_teardown=True),
)

STEP_BY_NAME = {s.name: s for s in STEPS}
MEASURING_STEPS = ("ingest", "north_south", "east_west")


def north_south_config(params: dict) -> dict:
    """The load generator's config (workload.bench.northsouth.NorthSouthConfig) from DAG params."""
    if params.get("load_mode", "concurrent") == "poisson":
        strategy = {"type": "poisson", "rate_rps": params.get("rate_rps", 2.0), "seed": params.get("seed", 0)}
    else:
        strategy = {"type": "concurrent", "concurrency": params.get("concurrency", 4)}
    return {
        "endpoint_kind": "rag",
        "strategy": strategy,
        "stop": {"max_requests": params.get("requests", 32),
                 "max_duration_s": params.get("max_duration_s", 600)},
        "warmup_requests": params.get("warmup_requests", 2),
        "max_tokens": params.get("max_tokens", 64),
        "k": params.get("k", 4),
        "slo": {"ttft_ms": params.get("slo_ttft_ms", 2000), "tpot_ms": params.get("slo_tpot_ms", 200),
                "e2e_ms": params.get("slo_e2e_ms")},
        "seed": params.get("seed", 0),
    }
