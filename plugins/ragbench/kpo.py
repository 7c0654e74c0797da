"""The cluster rendering of the step list: one KubernetesPodOperator per step and cluster target.

Every pod runs the workload image's CLI (``ragbench-workload <step> --out /airflow/xcom/return.json``)
as the namespace's ``ragbench-runner`` ServiceAccount and returns its result document through
XCom, the same document the local target's process writes. What varies per run (the params, the
deploy step's endpoint, the run id) is filled in when the task renders, by ragbench.cluster's pure
functions; the pod's spec is built by KubernetesPodOperator itself, so that tests render it with
``build_pod_request_obj`` and validate it offline.

Imported only when a cluster target is configured: the Kubernetes client is a heavy import.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import PodDefaults
from airflow.sdk import TriggerRule
from airflow.sdk.exceptions import AirflowSkipException
from kubernetes.client import models as k8s

from ragbench import cluster
from ragbench.steps import Step
from ragbench.targets import Target

# The XCom sidecar (alpine, `sleep` in a loop, then `cat` of the result) gets requests and limits
# unless the connection's extra xcom_sidecar_container_resources says otherwise.
SIDECAR_RESOURCES = k8s.V1ResourceRequirements(requests={"cpu": "10m", "memory": "16Mi"},
                                               limits={"cpu": "100m", "memory": "32Mi"})
TMP_SIZE = "256Mi"  # kubectl's cache and iperf3's buffer file; the root filesystem is read-only


def _container_security() -> k8s.V1SecurityContext:
    return k8s.V1SecurityContext(allow_privilege_escalation=False, read_only_root_filesystem=True,
                                 capabilities=k8s.V1Capabilities(drop=["ALL"]))


def _pod_security() -> k8s.V1PodSecurityContext:
    # The workload image's non-root user `ray` (uid 1000, gid 100), as in k8s/base.
    return k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=1000, run_as_group=100, fs_group=100,
                                    seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"))


def _env() -> list[k8s.V1EnvVar]:
    def field(path: str) -> k8s.V1EnvVarSource:
        return k8s.V1EnvVarSource(field_ref=k8s.V1ObjectFieldSelector(field_path=path))

    return [
        k8s.V1EnvVar(name="NODE_NAME", value_from=field("spec.nodeName")),  # East-West placement
        k8s.V1EnvVar(name="POD_NAMESPACE", value_from=field("metadata.namespace")),
        k8s.V1EnvVar(name="RAGBENCH_API_TOKEN", value_from=k8s.V1EnvVarSource(
            secret_key_ref=k8s.V1SecretKeySelector(name=cluster.API_TOKEN_SECRET, key=cluster.API_TOKEN_KEY,
                                                   optional=True))),
        k8s.V1EnvVar(name="HOME", value="/tmp"),
        k8s.V1EnvVar(name="TMPDIR", value="/tmp"),
        k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
    ]


def _affinity(step: Step) -> k8s.V1Affinity | None:
    if step.name == "east_west":
        # The iperf3 client never shares a node with the server: a cross-node measurement or none.
        return k8s.V1Affinity(pod_anti_affinity=k8s.V1PodAntiAffinity(
            required_during_scheduling_ignored_during_execution=[k8s.V1PodAffinityTerm(
                label_selector=k8s.V1LabelSelector(match_labels=dict(cluster.IPERF3_SERVER_LABELS)),
                topology_key="kubernetes.io/hostname")]))
    if step.name == "north_south":
        # A client pod keeps off the backend's nodes when it can, not to compete with it for CPU.
        return k8s.V1Affinity(pod_anti_affinity=k8s.V1PodAntiAffinity(
            preferred_during_scheduling_ignored_during_execution=[k8s.V1WeightedPodAffinityTerm(
                weight=100, pod_affinity_term=k8s.V1PodAffinityTerm(
                    label_selector=k8s.V1LabelSelector(match_labels=dict(cluster.BACKEND_LABELS)),
                    topology_key="kubernetes.io/hostname"))]))
    return None


class StepPodOperator(KubernetesPodOperator):
    """One benchmark step of one cluster target, in a pod of the workload image.

    When its task renders, it completes the pod's command line from the run's params (and, for a
    North-South client pod, the deploy step's public endpoint) and labels the pod with the run id.
    It skips itself when the run did not select its target, the teardown when ``keep_deployment``
    is set, and the North-South pod unless ``north_south_from`` is ``cluster``.
    """

    def __init__(self, *, target: Target, step: Step, deploy_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.step = step
        self.deploy_task_id = deploy_task_id

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
        self.arguments = cluster.pod_arguments(self.step, self.target, params, deploy_doc)

    def execute(self, context: Any) -> Any:
        reason = self.skip_reason(dict(context["params"]))
        if reason is not None:
            raise AirflowSkipException(reason)
        return super().execute(context)

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        pod = super().build_pod_request_obj(context, dry_run=dry_run)
        for container in pod.spec.containers:
            if container.name != PodDefaults.SIDECAR_CONTAINER_NAME:
                continue
            resources = container.resources  # the connection's setting arrives as a dict
            limits = resources.get("limits") if isinstance(resources, dict) else getattr(resources, "limits", None)
            if not limits:
                container.resources = SIDECAR_RESOURCES
        return pod


def step_pod_operator(step: Step, target: Target, group_id: str, *, task_id: str | None = None,
                      trigger_rule: str = TriggerRule.ALL_SUCCESS) -> StepPodOperator:
    """The task of one step on one cluster target (inside the target's task group)."""
    resources = {"cpu": step.cluster_cpu, "memory": step.cluster_memory}
    return StepPodOperator(
        task_id=task_id or step.task_id,
        target=target,
        step=step,
        deploy_task_id=f"{group_id}.deploy_workload",
        trigger_rule=trigger_rule,
        execution_timeout=timedelta(seconds=step.cluster_timeout),
        retries=2 if step.is_teardown else 1,
        # where and as whom
        kubernetes_conn_id=target.connection_id,
        namespace=target.namespace,
        service_account_name=cluster.RUNNER_SERVICE_ACCOUNT,
        automount_service_account_token=step.cluster_api_access,
        # what
        name=cluster.pod_name(target, step),
        image=target.image,
        image_pull_policy="IfNotPresent",
        cmds=[cluster.WORKLOAD_CLI],
        arguments=[step.cluster_command, "--out", cluster.XCOM_RETURN],  # completed when the task renders
        env_vars=_env(),
        container_resources=k8s.V1ResourceRequirements(requests=dict(resources), limits=dict(resources)),
        labels=cluster.pod_labels(target, step),
        affinity=_affinity(step),
        security_context=_pod_security(),
        container_security_context=_container_security(),
        xcom_sidecar_container_security_context=_container_security(),
        volumes=[k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=TMP_SIZE))],
        volume_mounts=[k8s.V1VolumeMount(name="tmp", mount_path="/tmp")],
        # lifecycle
        do_xcom_push=True,
        get_logs=True,
        log_events_on_failure=True,
        startup_timeout_seconds=cluster.POD_STARTUP_TIMEOUT_S,
        active_deadline_seconds=step.cluster_timeout,  # the pod ends itself if Airflow loses it
        on_finish_action="delete_pod",
    )
