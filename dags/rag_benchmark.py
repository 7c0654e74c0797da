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

from datetime import timedelta

from airflow.sdk import Asset, TaskGroup, TriggerRule, dag, get_current_context, task

from ragbench.run_params import airflow_params
from ragbench.steps import STEP_BY_NAME, STEPS, measure_pool
from ragbench.targets import Target, load_targets

TARGETS = load_targets()  # a small YAML file: cheap to read at parse time

RESULTS_ASSET_PREFIX = "ragbench://results/"


def results_asset(target_name: str) -> Asset:
    """Updated when a target's results are loaded (its load task succeeded), for DAGs to schedule on."""
    return Asset(f"{RESULTS_ASSET_PREFIX}{target_name}")


# Every trigger param is JSON schema with a type, bounds and a description for the trigger form,
# defined once in ragbench.run_params (the steps and `ragbench run` read the same definitions).
PARAMS = airflow_params(TARGETS)

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
            from airflow.sdk.exceptions import AirflowFailException

            from ragbench.client_job import check_params
            from ragbench.errors import RagbenchError
            from ragbench.preflight import gate
            from ragbench.step_errors import recorded

            _, params, ti = _ctx()
            _skip_unless_selected(target_name, params)
            with recorded(ti):  # the load task names the findings in the target's error
                try:  # what the client pods cannot do: refused before any pod starts, without a retry
                    check_params(target_name, params)
                except RagbenchError as exc:
                    raise AirflowFailException(str(exc)) from None
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
    # Nightly at 02:00 UTC. No start_date: with catchup off, Airflow would otherwise start the most
    # recent missed night's run as soon as the DAG is unpaused (a full benchmark nobody asked for,
    # queued ahead of the run the user just triggered); without one, the first run is the next 02:00.
    schedule="0 2 * * *",
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
