"""rag_benchmark: deploy the RAG workload to each target, measure it, load the results, print the scorecard.

One task group per target in config/targets.yaml: deploy -> ingest -> north-south -> east-west ->
(local target, when the `browser_requests` param is set: browser north-south, the chat page driven
by headless Chromium) -> teardown (always runs) -> load results; a cluster target's group first
runs a preflight of the cluster and stops at once when the cluster cannot take the deploy. A
target's failure stays inside its group; after the loads, check_regressions tests each target's raw
requests against its comparable recent runs (ragbench.regressions), and the final scorecard covers
whatever succeeded and names what failed and why. A target's load task publishes the asset
``ragbench://results/<target>`` when its results are in, for DAGs that schedule on them. Operating
it: docs/operations.md.

The plain step list (ragbench.steps) is rendered per target kind: processes for `local`,
KubernetesPodOperator pods for `kubernetes` targets (ragbench.kpo), where North-South runs from
the orchestrator (a fixed vantage point) unless the run's `north_south_from` param says `cluster`.
A run benchmarks the targets in its `targets` param (default: `default_targets` of the config).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Asset, Param, TaskGroup, TriggerRule, dag, get_current_context, task

from ragbench.steps import STEP_BY_NAME, STEPS, measure_pool
from ragbench.targets import Target, load_targets

TARGETS = load_targets()  # a small YAML file: cheap to read at parse time

RESULTS_ASSET_PREFIX = "ragbench://results/"


def results_asset(target_name: str) -> Asset:
    """Updated when a target's results are loaded (its load task succeeded), for DAGs to schedule on."""
    return Asset(f"{RESULTS_ASSET_PREFIX}{target_name}")


# Every trigger param is JSON schema: a type, bounds and a description for the trigger form.
PARAMS = {
    "targets": Param(TARGETS.default_targets, type="array", items={"type": "string", "enum": TARGETS.names()},
                     minItems=1, uniqueItems=True,
                     description="Targets to benchmark, from config/targets.yaml (the default is its "
                                 "default_targets). A cluster target needs its Airflow Kubernetes connection."),
    "load_mode": Param("concurrent", type="string", enum=["concurrent", "poisson", "sweep"],
                       description="concurrent: a fixed number in flight (closed loop); poisson: a fixed "
                                   "mean arrival rate (open loop); sweep: step concurrency up through "
                                   "sweep_levels and report the highest level meeting the SLOs."),
    "sweep_levels": Param([1, 2, 4, 8, 16], type="array", minItems=1, maxItems=32, uniqueItems=True,
                          items={"type": "integer", "minimum": 1, "maximum": 1024},
                          description="sweep: the concurrency levels (1-1024), increasing; `requests` are "
                                      "sent at each."),
    "slo_attainment_target": Param(0.95, type="number", exclusiveMinimum=0, maximum=1,
                                   description="sweep: the share of requests (0-1] that must meet the SLOs."),
    "concurrency": Param(4, type="integer", minimum=1, maximum=1024,
                         description="concurrent: requests in flight (1-1024)."),
    "rate_rps": Param(2.0, type="number", exclusiveMinimum=0, maximum=10000,
                      description="poisson: mean arrival rate, requests per second (> 0, up to 10000)."),
    "requests": Param(32, type="integer", minimum=1, maximum=100000,
                      description="Measured requests per scenario (1-100000), warm-up not counted."),
    "warmup_requests": Param(2, type="integer", minimum=0, maximum=1000,
                             description="Requests sent first and excluded from every metric (0-1000)."),
    "max_tokens": Param(64, type="integer", minimum=1, maximum=4096,
                        description="Output tokens per request (1-4096; the local model's context is 2048)."),
    "slo_ttft_ms": Param(2000, type="number", exclusiveMinimum=0, maximum=600000,
                         description="SLO: time to first token, ms (> 0, up to 600000)."),
    "slo_tpot_ms": Param(200, type="number", exclusiveMinimum=0, maximum=60000,
                         description="SLO: time per output token, ms (> 0, up to 60000)."),
    "browser_requests": Param(0, type="integer", minimum=0, maximum=1000,
                              description="Local target: questions asked one at a time through the service's "
                                          "chat page in headless Chromium after the other steps, measured by "
                                          "the page (the browser vantage point, scenario `browser`; 0-1000, "
                                          "0 = off)."),
    "ew_duration_s": Param(3, type="number", minimum=1, maximum=300,
                           description="East-West: iperf3 seconds per sample (1-300)."),
    "ew_streams": Param(1, type="integer", minimum=1, maximum=128,
                        description="East-West: iperf3 parallel streams (1-128)."),
    "ew_samples": Param(3, type="integer", minimum=1, maximum=20,
                        description="East-West: iperf3 samples per probe (1-20)."),
    "keep_deployment": Param(False, type="boolean",
                             description="Leave the workload running after the run (teardown skips)."),
    "north_south_from": Param("orchestrator", type="string", enum=["orchestrator", "cluster"],
                              description="Cluster targets: where the North-South load comes from: the "
                                          "orchestrator (one fixed vantage point for every cluster) or a "
                                          "client pod in the cluster. Both go through the public endpoint."),
    "regression_threshold_pct": Param(10.0, type="number", exclusiveMinimum=0, maximum=1000,
                                      description="Regression check: flag a headline metric that is worse "
                                                  "than the median of the baseline runs by more than this "
                                                  "many percent (> 0, up to 1000)."),
    "regression_baseline_runs": Param(7, type="integer", minimum=3, maximum=100,
                                      description="Regression check: how many valid earlier runs of the same "
                                                  "target form the baseline median (3-100; at least 3 must "
                                                  "exist for a metric to be compared)."),
    "fail_on_regression": Param(False, type="boolean",
                                description="Fail check_regressions (so alerting fires) when a regression "
                                            "is flagged. Off: flagged ones are logged and stored only."),
}

# Every task has an execution timeout and at least one retry; steps set their own timeouts.
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


def _skip_unless_enabled(step, params: dict) -> None:
    from airflow.sdk.exceptions import AirflowSkipException

    if step.enabled_by and not params.get(step.enabled_by):
        raise AirflowSkipException(f"optional step, off: param {step.enabled_by} is {params.get(step.enabled_by)!r}")


def _load_results(target_name: str, group_id: str, fallbacks: dict[str, str] | None = None,
                  preflight_task_id: str | None = None):
    """The target's load task: every step's document (a step's result may come from a fallback
    task, e.g. North-South from its client pod), loaded whatever failed, with the reasons the failed
    steps recorded (and the preflight's findings when it stopped the group); fails if any step did.
    Loading is idempotent, so retrying it is safe. On success it updates the target's results asset."""

    @task(task_id="load_results", trigger_rule=TriggerRule.ALL_DONE, retries=2,
          execution_timeout=timedelta(minutes=15), outlets=[results_asset(target_name)])
    def load_results() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from ragbench.pipeline import load_target_results
        from ragbench.step_errors import reasons

        run_id, params, ti = _ctx()
        _skip_unless_selected(target_name, params)
        refs = {s.name: _pull(ti, group_id, s.task_id) for s in STEPS}
        why = reasons(ti, {s.name: f"{group_id}.{s.task_id}" for s in STEPS})  # why failed steps failed
        for step_name, task_id in (fallbacks or {}).items():
            refs[step_name] = refs[step_name] or _pull(ti, group_id, task_id)
            why = {**reasons(ti, {step_name: f"{group_id}.{task_id}"}), **why}
        if preflight_task_id:
            why.update(reasons(ti, {"preflight": preflight_task_id}))
        result = load_target_results(target_name, run_id, params, get_current_context()["dag_run"].start_date,
                                     refs, why)
        if result["failed_steps"]:  # a verdict, not a transient error: no retry
            raise AirflowFailException(f"{target_name}: failed steps {result['failed_steps']} (results loaded)")
        return result

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

            @task(task_id=step.task_id, execution_timeout=timedelta(seconds=step.timeout_s),
                  pool=measure_pool(step.name, target.kind))
            def run_step(step_name: str = step.name) -> dict:
                from ragbench.pipeline import run_local_step
                from ragbench.step_errors import recorded

                run_id, params, ti = _ctx()
                _skip_unless_selected(target_name, params)
                _skip_unless_enabled(STEP_BY_NAME[step_name], params)
                with recorded(ti):
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
    """The steps as pods on a Kubernetes target (ragbench.kpo); North-South also from the orchestrator.

    The group opens with a preflight of the cluster (ragbench.preflight): on an error it fails at
    once, without a retry; every step after it is then upstream_failed, the teardown skips (nothing
    was applied) and the load task records the preflight's findings as the target's error."""
    from ragbench.kpo import PREFLIGHT_TASK_ID, step_pod_operator  # light: no Kubernetes client at parse time

    target_name = target.name
    with TaskGroup(group_id=_group_id(target)) as group:
        gid = group.group_id

        @task(task_id=PREFLIGHT_TASK_ID, execution_timeout=timedelta(minutes=3), retries=1,
              retry_delay=timedelta(seconds=15))
        def preflight() -> dict:
            from ragbench.preflight import gate
            from ragbench.step_errors import recorded

            _, params, ti = _ctx()
            _skip_unless_selected(target_name, params)
            with recorded(ti):  # the load task names the findings in the target's error
                return gate(target)

        checked = preflight()
        ns_step = STEP_BY_NAME["north_south"]
        ns_pod_task_id = f"{ns_step.task_id}_in_cluster"

        # Exactly one of the two North-South tasks runs, the other skips: East-West follows either.
        pods = {s.name: step_pod_operator(s, target, gid, trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS
                                          if s.name == "east_west" else TriggerRule.ALL_SUCCESS)
                for s in STEPS if not s.is_teardown and not s.orchestrator_option and not s.local_only}
        ns_pod = step_pod_operator(ns_step, target, gid, task_id=ns_pod_task_id)
        teardown_step = next(s for s in STEPS if s.is_teardown)
        td = step_pod_operator(teardown_step, target, gid, trigger_rule=TriggerRule.ALL_DONE)

        @task(task_id=ns_step.task_id, execution_timeout=timedelta(seconds=ns_step.timeout_s),
              pool=measure_pool(ns_step.name, target.kind))
        def run_north_south() -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from ragbench.cluster import north_south_from, run_north_south_from_orchestrator
            from ragbench.step_errors import recorded

            run_id, params, ti = _ctx()
            _skip_unless_selected(target_name, params)
            if north_south_from(params) != "orchestrator":
                raise AirflowSkipException("north_south_from is cluster: a client pod runs this step")
            from ragbench.results_store import publish

            with recorded(ti):
                doc = run_north_south_from_orchestrator(target_name, params, _pull(ti, gid, "deploy_workload"),
                                                        prometheus_url=target.prometheus_url,
                                                        namespace=target.namespace)
                return publish(doc, target, run_id)  # with a results store: only a reference in XCom

        ns_orchestrator = run_north_south()
        checked >> pods["deploy"] >> pods["ingest"] >> [ns_orchestrator, ns_pod] >> pods["east_west"] >> td
        pods["deploy"] >> td  # teardown also runs right after a failed deploy
        # The pods return their documents themselves through XCom (not a path to one), or references
        # to them in the target's results store (ragbench.results_store).
        td >> _load_results(target_name, gid, fallbacks={"north_south": ns_pod_task_id},
                            preflight_task_id=f"{gid}.{PREFLIGHT_TASK_ID}")
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

    @task(task_id="check_regressions", trigger_rule=TriggerRule.ALL_DONE, retries=2,
          execution_timeout=timedelta(minutes=10))
    def check_regressions() -> dict:
        from ragbench.regressions import run_check

        run_id, params, _ = _ctx()
        return run_check(run_id, params)

    # No retry: the report fails the run when a target failed, and a retry cannot change that.
    @task(task_id="report_scorecard", trigger_rule=TriggerRule.ALL_DONE, retries=0,
          execution_timeout=timedelta(minutes=5))
    def report_scorecard() -> dict:
        from ragbench.pipeline import report

        run_id, params, _ = _ctx()
        return report(run_id, params)

    started = start_run()
    check_task = check_regressions()
    report_task = report_scorecard()
    for target in TARGETS.targets:
        started >> _target_group(target) >> check_task
    check_task >> report_task


rag_benchmark()
