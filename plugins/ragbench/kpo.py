"""The cluster rendering of the step list: one StepPodOperator per step and cluster target.

Every pod runs the workload image's CLI (``ragbench-workload <step> --out /airflow/xcom/return.json``)
as the namespace's ``ragbench-runner`` ServiceAccount and returns its result document through
XCom, the same document the local target's process writes (or, when the target has a results
store, a reference to the document it wrote there: ragbench.results_store). What varies per run (the params, the
deploy step's endpoint, the run id) is filled in when the task renders, by ragbench.cluster's pure
functions.

The DAG file imports this module at parse time, so it stays light: a StepPodOperator holds its
step as plain data, and only when the task runs does it build the real KubernetesPodOperator
(ragbench.pod_spec, which imports the Kubernetes client) and run it. Tests render the pod the same
way, with ``build_pod_request_obj``, offline. The North-South client is a Job of ``client_pods``
such pods, shards of one schedule; its task merges their documents into one (ragbench.client_job).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseHook, BaseOperator, TriggerRule
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException, AirflowSkipException

from ragbench import client_job, cluster
from ragbench.errors import RagbenchError
from ragbench.steps import Step, measure_pool
from ragbench.targets import Target


# The first task of a cluster target's group (dags/rag_benchmark.py, ragbench.preflight.gate).
PREFLIGHT_TASK_ID = "preflight"


class StepPodOperator(BaseOperator):
    """One benchmark step of one cluster target, in a pod of the workload image.

    When its task renders, it completes the pod's command line from the run's params (and, for a
    North-South client pod, the deploy step's public endpoint) and labels the pod with the run id.
    It skips itself when the run did not select its target, the teardown when ``keep_deployment``
    is set or when the group's preflight failed (nothing was applied), and the North-South pod
    unless ``north_south_from`` is ``cluster``. A target whose
    Airflow connection does not exist fails at once, without retries: no attempt can succeed.
    """

    template_fields = ("arguments", "labels", "annotations")
    ui_color = "#e4f0e8"

    def __init__(self, *, target: Target, step: Step, deploy_task_id: str, preflight_task_id: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.step = step
        self.deploy_task_id = deploy_task_id
        self.preflight_task_id = preflight_task_id
        self.kubernetes_conn_id = target.connection_id
        self.namespace = target.namespace
        self.image = target.image
        self.name = cluster.pod_name(target, step)
        self.arguments = [step.cluster_command, "--out", cluster.XCOM_RETURN]  # completed when the task renders
        self.labels = cluster.pod_labels(target, step)
        self.annotations: dict[str, str] = {}
        self.client_pods = 1  # North-South client: how many pods (ragbench.client_job), set when rendering
        self.start_at: float | None = None  # ... and their agreed start, when more than one
        self._pod_operator = None
        self._deferred_error: str | None = None  # found while rendering, raised (and recorded) by execute

    def skip_reason(self, params: dict) -> str | None:
        from ragbench.pipeline import selected  # the results database's modules: only when a task runs

        if not selected(self.target.name, params):
            return f"{self.target.name} not selected in params.targets"
        if self.step.is_teardown and params.get("keep_deployment"):
            return "keep_deployment is set: the workload stays deployed"
        if self.step.orchestrator_option and cluster.north_south_from(params) != "cluster":
            return "north_south_from is orchestrator: the orchestrator runs this step"
        return None

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)
        params = dict(context["params"])
        run_id = context["run_id"]
        self.labels = {**self.labels, **cluster.pod_labels(self.target, self.step, run_id)}
        self.annotations = {**self.annotations, f"{cluster.LABEL_PREFIX}/run-id": run_id}
        if self.skip_reason(params) is not None:
            return  # execute() skips; nothing to fill in
        deploy_doc = None
        if self.step.orchestrator_option:  # the client pod needs the public endpoint
            deploy_doc = context["ti"].xcom_pull(task_ids=self.deploy_task_id)
        ranges = None
        if self.step.name == "deploy":  # who may reach the load balancer (may ask the network)
            try:
                ranges = cluster.source_ranges(self.target)
            except RagbenchError as exc:
                self._deferred_error, ranges = str(exc), []
        if self.step.name == "north_south":  # N client pods, one schedule (ragbench.client_job)
            self._render_clients(params, deploy_doc, run_id)
            return
        self.arguments = cluster.pod_arguments(self.step, self.target, params, deploy_doc, run_id, ranges=ranges)

    def _render_clients(self, params: dict, deploy_doc: dict | None, run_id: str) -> None:
        import time

        try:
            client_job.check_params(self.target.name, params)  # the preflight refused it already
        except RagbenchError as exc:
            self._deferred_error = str(exc)
        self.client_pods = client_job.client_pods(params)
        # Rendering happens just before execute() creates the Job: the grace starts about now.
        self.start_at = time.time() + client_job.START_GRACE_S if self.client_pods > 1 else None
        self.arguments = cluster.pod_arguments(self.step, self.target, params, deploy_doc, run_id,
                                               shards=self.client_pods, start_at=self.start_at)

    def pod_operator(self):
        """The KubernetesPodOperator of this step (built once, with the rendered fields)."""
        if self._pod_operator is None:
            from ragbench.pod_spec import pod_operator  # the Kubernetes client: only now

            self._pod_operator = pod_operator(self)
        return self._pod_operator

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False):
        return self.pod_operator().build_pod_request_obj(context, dry_run=dry_run)

    def check_connection(self) -> None:
        try:
            BaseHook.get_connection(self.kubernetes_conn_id)
        except AirflowNotFoundException:
            raise AirflowFailException(
                f"{self.target.name}: the Airflow connection {self.kubernetes_conn_id!r} does not exist "
                "(add the cluster's kubeconfig as that Kubernetes connection)") from None

    def execute(self, context: Any) -> Any:
        reason = self.skip_reason(dict(context["params"]))
        if reason is not None:
            raise AirflowSkipException(reason)
        from ragbench.step_errors import ERROR_KEY, recorded

        ti = context["ti"]
        if self.step.is_teardown and self.preflight_task_id and ti.xcom_pull(task_ids=self.preflight_task_id,
                                                                              key=ERROR_KEY):
            # Only on a recorded preflight failure: then no step ran, so nothing was applied.
            raise AirflowSkipException("the preflight failed: nothing was applied, nothing to tear down")

        with recorded(ti):  # the load task stores why this step failed
            self.check_connection()
            if self._deferred_error:  # e.g. no source ranges: the deploy would leave the backend unreachable
                raise RagbenchError(self._deferred_error)
            # A nested operator: Airflow logs a warning that its execute() runs inside another one.
            result = self.pod_operator().execute(context)
            if self.step.name != "north_south":
                return result
            doc = client_job.merge_results(self.target.name, result, self.client_pods)  # checks every shard
            if self.client_pods == 1:
                return result[0].value  # as the pod returned it: its document, or a reference to it
            from ragbench.results_store import publish

            return publish(doc, self.target, context["run_id"])  # with a store: a reference to the merged one

    def on_kill(self) -> None:
        if self._pod_operator is not None:
            self._pod_operator.on_kill()  # deletes the pod


def step_pod_operator(step: Step, target: Target, group_id: str, *, task_id: str | None = None,
                      trigger_rule: str = TriggerRule.ALL_SUCCESS) -> StepPodOperator:
    """The task of one step on one cluster target (inside the target's task group)."""
    return StepPodOperator(
        task_id=task_id or step.task_id,
        target=target,
        step=step,
        deploy_task_id=f"{group_id}.deploy_workload",
        preflight_task_id=f"{group_id}.{PREFLIGHT_TASK_ID}",
        trigger_rule=trigger_rule,
        execution_timeout=timedelta(seconds=step.cluster_timeout),
        pool=measure_pool(step.name, target.kind),  # None: Airflow's default pool
        retries=2 if step.is_teardown else 1,
        retry_delay=timedelta(seconds=30),
    )
