"""A step's pod as KubernetesPodOperator builds and runs it, made when the step's task runs.

This module and ragbench.client_job_operator (the North-South client pods' Job, built on the pod
made here) are the only ones that import the Kubernetes client and the cncf-kubernetes provider's
operators, both heavy imports (about a second together). The DAG file never imports them: the
parse-time operator (ragbench.kpo.StepPodOperator) holds the step as plain data and calls
:func:`pod_operator` from its ``execute`` (and from ``build_pod_request_obj`` in the tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.providers.cncf.kubernetes.utils.xcom_sidecar import PodDefaults
from kubernetes.client import models as k8s

from ragbench import cluster
from ragbench.steps import Step
from workload.images import pull_policy

if TYPE_CHECKING:
    from ragbench.kpo import StepPodOperator

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

    def optional_secret(name: str, key: str) -> k8s.V1EnvVarSource:
        return k8s.V1EnvVarSource(secret_key_ref=k8s.V1SecretKeySelector(name=name, key=key, optional=True))

    return [
        k8s.V1EnvVar(name="NODE_NAME", value_from=field("spec.nodeName")),  # East-West placement
        k8s.V1EnvVar(name="POD_NAMESPACE", value_from=field("metadata.namespace")),
        k8s.V1EnvVar(name="RAGBENCH_API_TOKEN",
                     value_from=optional_secret(cluster.API_TOKEN_SECRET, cluster.API_TOKEN_KEY)),
        k8s.V1EnvVar(name="RAGBENCH_PROMETHEUS_TOKEN",  # the in-cluster North-South client's Prometheus
                     value_from=optional_secret(cluster.PROMETHEUS_TOKEN_SECRET, cluster.PROMETHEUS_TOKEN_KEY)),
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


def size_sidecar(pod: k8s.V1Pod) -> k8s.V1Pod:
    """Give the XCom sidecar requests and limits (unless the connection sized it)."""
    for container in pod.spec.containers:
        if container.name != PodDefaults.SIDECAR_CONTAINER_NAME:
            continue
        resources = container.resources  # the connection's setting arrives as a dict
        limits = resources.get("limits") if isinstance(resources, dict) else getattr(resources, "limits", None)
        if not limits:
            container.resources = SIDECAR_RESOURCES
    return pod


class _StepPod(KubernetesPodOperator):
    """KubernetesPodOperator with a sized XCom sidecar."""

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        return size_sidecar(super().build_pod_request_obj(context, dry_run=dry_run))


def _pod_arguments(op: StepPodOperator) -> dict[str, Any]:
    """What every step pod is, whether it runs alone or as one of a Job's pods."""
    step = op.step
    resources = {"cpu": step.cluster_cpu, "memory": step.cluster_memory}
    return dict(
        task_id=op.task_id,
        # where and as whom
        kubernetes_conn_id=op.kubernetes_conn_id,
        namespace=op.namespace,
        service_account_name=cluster.RUNNER_SERVICE_ACCOUNT,
        automount_service_account_token=step.cluster_api_access,
        # what
        name=op.name,
        image=op.image,
        image_pull_policy=pull_policy(op.image),  # a tag may be moved: Always; a digest: IfNotPresent
        image_pull_secrets=[k8s.V1LocalObjectReference(name=op.target.image_pull_secret)]
        if op.target.image_pull_secret else None,
        cmds=[cluster.WORKLOAD_CLI],
        arguments=list(op.arguments),
        env_vars=_env(),
        # The results store's credentials and endpoint, when the target names a Secret for them.
        env_from=[k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name=op.target.results_store_secret))]
        if op.target.results_store_secret else None,
        container_resources=k8s.V1ResourceRequirements(requests=dict(resources), limits=dict(resources)),
        labels=dict(op.labels),
        annotations=dict(op.annotations),
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
        deferrable=False,  # runs inside StepPodOperator.execute
    )


def pod_operator(op: StepPodOperator) -> KubernetesPodOperator:
    """The operator that runs ``op``'s step, from its rendered arguments and labels: a pod, or for the
    North-South client, an Indexed Job of ``op.client_pods`` pods (ragbench.client_job)."""
    if op.step.name == "north_south":
        from ragbench.client_job_operator import ClientJob  # only the North-South task needs it

        return ClientJob(client_pods=op.client_pods, start_at=op.start_at, **_pod_arguments(op))
    return _StepPod(**_pod_arguments(op))
