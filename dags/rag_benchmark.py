"""rag_benchmark: deploy the RAG workload to each target, measure it, load the results, print the scorecard.

One task group per target in config/targets.yaml: deploy -> ingest -> north-south -> east-west ->
teardown (always runs) -> load results. A target's failure stays inside its group; the final
scorecard covers whatever succeeded and names what failed.

The plain step list (ragbench.steps) is rendered per target kind: processes for `local`,
KubernetesPodOperator pods for `kubernetes` targets (ragbench.kpo), where North-South runs from
the orchestrator (a fixed vantage point) unless the run's `north_south_from` param says `cluster`.
A run benchmarks the targets in its `targets` param (default: `default_targets` of the config).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, TaskGroup, TriggerRule, dag, get_current_context, task

from ragbench.steps import STEP_BY_NAME, STEPS
from ragbench.targets import Target, load_targets

TARGETS = load_targets()  # a small YAML file: cheap to read at parse time

PARAMS = {
    "targets": Param(TARGETS.default_targets, type="array", items={"type": "string", "enum": TARGETS.names()},
                     minItems=1, uniqueItems=True,
                     description="Targets to benchmark (from config/targets.yaml; the default is its "
                                 "default_targets)."),
    "load_mode": Param("concurrent", enum=["concurrent", "poisson", "sweep"],
                       description="concurrent: a fixed number in flight (closed loop); poisson: a fixed "
                                   "mean arrival rate (open loop); sweep: step concurrency up through "
                                   "sweep_levels and report the highest level meeting the SLOs."),
    "sweep_levels": Param([1, 2, 4, 8, 16], type="array", minItems=1,
                          items={"type": "integer", "minimum": 1, "maximum": 1024},
                          description="Concurrency levels of a sweep, increasing; `requests` are sent at each."),
    "slo_attainment_target": Param(0.95, type="number", exclusiveMinimum=0, maximum=1,
                                   description="Sweep: the share of requests that must meet the SLOs."),
    "concurrency": Param(4, type="integer", minimum=1, maximum=1024, description="Requests in flight (concurrent)."),
    "rate_rps": Param(2.0, type="number", exclusiveMinimum=0, description="Mean arrival rate (poisson), req/s."),
    "requests": Param(32, type="integer", minimum=1, maximum=100000, description="Measured requests."),
    "warmup_requests": Param(2, type="integer", minimum=0, maximum=1000,
                             description="Requests sent first and excluded from every metric."),
    "max_tokens": Param(64, type="integer", minimum=1, maximum=4096, description="Output tokens per request."),
    "slo_ttft_ms": Param(2000, type="number", exclusiveMinimum=0, description="SLO: time to first token, ms."),
    "slo_tpot_ms": Param(200, type="number", exclusiveMinimum=0, description="SLO: time per output token, ms."),
    "ew_duration_s": Param(3, type="number", minimum=1, maximum=300, description="iperf3 seconds per sample."),
    "ew_streams": Param(1, type="integer", minimum=1, maximum=128, description="iperf3 parallel streams."),
    "ew_samples": Param(3, type="integer", minimum=1, maximum=20, description="iperf3 samples per probe."),
    "keep_deployment": Param(False, type="boolean", description="Leave the workload running after the run."),
    "north_south_from": Param("orchestrator", enum=["orchestrator", "cluster"],
                              description="Cluster targets: where the North-South load comes from: the "
                                          "orchestrator (one fixed vantage point for every cluster) or a "
                                          "client pod in the cluster. Both go through the public endpoint."),
}

DEFAULT_ARGS = {"retries": 1, "retry_delay": timedelta(seconds=30), "execution_timeout": timedelta(minutes=30)}


def _ctx() -> tuple[str, dict, object]:
    context = get_current_context()
    return context["run_id"], dict(context["params"]), context["ti"]


def _target_group(target: Target) -> TaskGroup:
    """The target's task group, rendered for its kind; group ids are target names with `_` for `-`."""
    return _cluster_group(target) if target.kind == "kubernetes" else _local_group(target)


def _group_id(target: Target) -> str:
    return target.name.replace("-", "_")


def _pull(ti, group_id: str, task_id: str):
    return ti.xcom_pull(task_ids=f"{group_id}.{task_id}")


def _skip_unless_selected(target_name: str, params: dict) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    from ragbench.pipeline import selected

    if not selected(target_name, params):
        raise AirflowSkipException(f"{target_name} not selected in params.targets")


def _load_results(target_name: str, group_id: str, fallbacks: dict[str, str] | None = None):
    """The target's load task: every step's document (a step's result may come from a fallback
    task, e.g. North-South from its client pod), loaded whatever failed; fails if any step did."""

    @task(task_id="load_results", trigger_rule=TriggerRule.ALL_DONE, retries=2)
    def load_results() -> dict:
        from ragbench.pipeline import load_or_fail

        run_id, params, ti = _ctx()
        _skip_unless_selected(target_name, params)
        refs = {s.name: _pull(ti, group_id, s.task_id) for s in STEPS}
        for step_name, task_id in (fallbacks or {}).items():
            refs[step_name] = refs[step_name] or _pull(ti, group_id, task_id)
        return load_or_fail(target_name, run_id, params, get_current_context()["dag_run"].start_date, refs)

    return load_results()


def _local_group(target: Target) -> TaskGroup:
    """The steps as processes of this machine (ragbench.local_exec)."""
    target_name = target.name
    with TaskGroup(group_id=_group_id(target)) as group:
        gid = group.group_id
        previous = None
        steps = {}
        for step in STEPS:
            if step.is_teardown:
                continue

            @task(task_id=step.task_id, execution_timeout=timedelta(seconds=step.timeout_s))
            def run_step(step_name: str = step.name) -> dict:
                from ragbench.pipeline import run_local_step

                run_id, params, ti = _ctx()
                _skip_unless_selected(target_name, params)
                deploy_ref = None if step_name == "deploy" else _pull(ti, gid, "deploy_workload")
                return run_local_step(step_name, target_name, run_id, params, deploy_ref)

            steps[step.name] = run_step()
            if previous is not None:
                previous >> steps[step.name]
            previous = steps[step.name]

        teardown_step = next(s for s in STEPS if s.is_teardown)

        @task(task_id=teardown_step.task_id, trigger_rule=TriggerRule.ALL_DONE,
              execution_timeout=timedelta(seconds=teardown_step.timeout_s))
        def teardown() -> dict | None:
            from ragbench.pipeline import run_local_step

            run_id, params, ti = _ctx()
            _skip_unless_selected(target_name, params)
            if params.get("keep_deployment"):
                return None
            return run_local_step("teardown", target_name, run_id, params, None)

        td = teardown()
        previous >> td
        steps["deploy"] >> td
        td >> _load_results(target_name, gid)
    return group


def _cluster_group(target: Target) -> TaskGroup:
    """The steps as pods on a Kubernetes target (ragbench.kpo); North-South also from the orchestrator."""
    from ragbench.kpo import step_pod_operator  # the Kubernetes client: only with a cluster target

    target_name = target.name
    with TaskGroup(group_id=_group_id(target)) as group:
        gid = group.group_id
        ns_step = STEP_BY_NAME["north_south"]
        ns_pod_task_id = f"{ns_step.task_id}_in_cluster"

        # Exactly one of the two North-South tasks runs, the other skips: East-West follows either.
        pods = {s.name: step_pod_operator(s, target, gid, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
                                          if s.name == "east_west" else TriggerRule.ALL_SUCCESS)
                for s in STEPS if not s.is_teardown and not s.orchestrator_option}
        ns_pod = step_pod_operator(ns_step, target, gid, task_id=ns_pod_task_id)
        teardown_step = next(s for s in STEPS if s.is_teardown)
        td = step_pod_operator(teardown_step, target, gid, trigger_rule=TriggerRule.ALL_DONE)

        @task(task_id=ns_step.task_id, execution_timeout=timedelta(seconds=ns_step.timeout_s))
        def run_north_south() -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from ragbench.cluster import north_south_from, run_north_south_from_orchestrator

            run_id, params, ti = _ctx()
            _skip_unless_selected(target_name, params)
            if north_south_from(params) != "orchestrator":
                raise AirflowSkipException("north_south_from is cluster: a client pod runs this step")
            return run_north_south_from_orchestrator(target_name, params, _pull(ti, gid, "deploy_workload"))

        ns_orchestrator = run_north_south()
        pods["deploy"] >> pods["ingest"] >> [ns_orchestrator, ns_pod] >> pods["east_west"] >> td
        pods["deploy"] >> td  # teardown also runs right after a failed deploy
        # The pods return their documents themselves through XCom (not a path to one).
        td >> _load_results(target_name, gid, fallbacks={"north_south": ns_pod_task_id})
    return group


@dag(
    dag_id="rag_benchmark",
    description="RAG performance and cost scorecard across Kubernetes providers",
    schedule="0 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    default_args=DEFAULT_ARGS,
    tags=["ragbench", "benchmark"],
    doc_md=__doc__,
)
def rag_benchmark():
    @task(task_id="start_run", execution_timeout=timedelta(minutes=5))
    def start_run() -> str:
        from ragbench.pipeline import start_run as _start

        run_id, params, _ = _ctx()
        context = get_current_context()
        return _start(run_id, "rag_benchmark", context["dag_run"].start_date, context["dag_run"].run_type, params)

    @task(task_id="report_scorecard", trigger_rule=TriggerRule.ALL_DONE, execution_timeout=timedelta(minutes=5))
    def report_scorecard() -> list[dict]:
        from ragbench.pipeline import report

        run_id, params, _ = _ctx()
        return report(run_id, params)

    started = start_run()
    report_task = report_scorecard()
    for target in TARGETS.targets:
        started >> _target_group(target) >> report_task


rag_benchmark()
