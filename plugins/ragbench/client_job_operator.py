"""The North-South client pods as one Kubernetes Indexed Job, started and watched by one task.

Measuring steps share one slot of the ``ragbench_measure`` pool, so N client pods cannot be N tasks
(they would run one after another): the North-South task creates one Job of N pods
(completionMode Indexed, completions = parallelism = N, no retries), each pod the step pod that
ragbench.pod_spec builds for every step. It is KubernetesJobOperator with three changes, because its
own ``execute`` looks for the Job's pods a few times without waiting (it can find fewer than N and
carry on with them), waits on the pods one after another and only then on the Job, and leaves the
Job behind:

- it waits until every index has a started pod, until the agreed start at the latest (a pod still
  Pending then cannot be on time: the task fails with the scheduler's reason, e.g. Insufficient cpu);
- it watches all pods together and reads each pod's result (XCom sidecar) as soon as its container
  ends; the first pod that fails stops the watch, so a late or broken shard fails the task at once
  rather than after the others' full run;
- it deletes the Job (and so its pods) whatever happened.

It returns one ragbench.client_job.ShardResult per index; the task checks and merges them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator
from airflow.providers.cncf.kubernetes.utils.pod_manager import EMPTY_XCOM_RESULT
from kubernetes.client import models as k8s

from ragbench import cluster
from ragbench.client_job import INDEX_ANNOTATION, ShardResult
from ragbench.errors import RagbenchError
from ragbench.pod_spec import size_sidecar

POLL_S = 5.0
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on the Job's pods
BASE = "base"  # KubernetesPodOperator's name of the step's container
JOB_TTL_S = 600  # the Job removes itself this long after it ends, should the task not have deleted it


def _state(pod: k8s.V1Pod) -> tuple[str, str | None]:
    """('waiting' | 'running' | 'ok' | 'failed', reason) of a pod's step container."""
    status = pod.status or k8s.V1PodStatus()
    if status.phase == "Failed" and not status.container_statuses:
        return "failed", f"pod failed: {status.reason or ''} {status.message or ''}".strip()
    for c in status.container_statuses or []:
        if c.name != BASE or c.state is None:
            continue
        if c.state.terminated is not None:
            t = c.state.terminated
            if t.exit_code == 0:
                return "ok", None
            return "failed", f"exit code {t.exit_code} ({t.reason or 'Error'})"
        if c.state.running is not None:
            return "running", None
        if c.state.waiting is not None:
            return "waiting", f"{c.state.waiting.reason}: {c.state.waiting.message or ''}".strip(": ")
    for cond in status.conditions or []:  # not scheduled yet: the scheduler says why
        if cond.type == "PodScheduled" and cond.status != "True":
            return "waiting", f"not scheduled: {cond.message or cond.reason}"
    return "waiting", status.phase or "Pending"


def _index(pod: k8s.V1Pod) -> int:
    return int((pod.metadata.annotations or {})[INDEX_ANNOTATION])


class ClientJob(KubernetesJobOperator):
    """N client pods of one schedule, as an Indexed Job; ``execute`` returns their ShardResults."""

    def __init__(self, *, client_pods: int, start_at: float | None, **kwargs: Any) -> None:
        super().__init__(completion_mode="Indexed", completions=client_pods, parallelism=client_pods,
                         backoff_limit=0,  # a pod that fails is not started again, late and alone
                         ttl_seconds_after_finished=JOB_TTL_S, wait_until_job_complete=True, **kwargs)
        self.client_pods = client_pods
        self.start_at = start_at

    def build_pod_request_obj(self, context: Any = None, *, dry_run: bool = False) -> k8s.V1Pod:
        """One client pod, as the Job's template holds it."""
        return self._client_pod(super().build_pod_request_obj(context, dry_run=dry_run))

    def build_job_request_obj(self, context: Any = None) -> k8s.V1Job:
        job = super().build_job_request_obj(context)  # its template: KubernetesPodOperator's own pod
        pod = self._client_pod(k8s.V1Pod(metadata=job.spec.template.metadata, spec=job.spec.template.spec))
        job.spec.template = k8s.V1PodTemplateSpec(metadata=pod.metadata, spec=pod.spec)
        return job

    def _client_pod(self, pod: k8s.V1Pod) -> k8s.V1Pod:
        size_sidecar(pod)
        # Client pods spread over the nodes (a preference: a pod that cannot spread still runs).
        mine = {k: v for k, v in (self.labels or {}).items() if k.startswith(cluster.LABEL_PREFIX + "/")}
        pod.spec.topology_spread_constraints = [k8s.V1TopologySpreadConstraint(
            max_skew=1, topology_key="kubernetes.io/hostname", when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.V1LabelSelector(match_labels=mine))]
        return pod

    # --- running ----------------------------------------------------------------------------------

    def execute(self, context: Any) -> list[ShardResult]:
        self.name = self._set_name(self.name)
        self.job_request_obj = self.build_job_request_obj(context)
        self.pods: list[k8s.V1Pod] = []
        self.job = self.create_job(self.job_request_obj)
        self.log.info("created Job %s: %d client pod(s)%s", self.job.metadata.name, self.client_pods,
                      f", agreed start {self.start_at:.3f}" if self.start_at else "")
        try:
            self.pods = self._await_started(context)
            return self._collect()
        finally:
            self._delete_job()

    def _list(self, context: Any) -> dict[int, k8s.V1Pod]:
        """This Job's pods by index (the Job controller labels each with the Job's name)."""
        items = self.client.list_namespaced_pod(namespace=self.job.metadata.namespace,
                                                label_selector=f"{JOB_NAME_LABEL}={self.job.metadata.name}").items
        return {_index(p): p for p in items
                if INDEX_ANNOTATION in (p.metadata.annotations or {}) and not p.metadata.deletion_timestamp}

    def _await_started(self, context: Any) -> list[k8s.V1Pod]:
        """Every index's pod, once each has started; fails at the agreed start (or the start-up
        timeout for a single pod) naming the pods that have not and why."""
        deadline = self.start_at or (time.time() + cluster.POD_STARTUP_TIMEOUT_S)
        while True:
            pods = self._list(context)
            states = {i: _state(p) for i, p in pods.items()}
            if len(pods) == self.client_pods and all(s != "waiting" for s, _ in states.values()):
                return [pods[i] for i in sorted(pods)]
            if time.time() >= deadline:
                waiting = [f"pod {i} ({pods[i].metadata.name}): {states[i][1]}" for i in sorted(pods)
                           if states[i][0] == "waiting"]
                missing = [str(i) for i in range(self.client_pods) if i not in pods]
                what = "; ".join(waiting + ([f"pods {', '.join(missing)} not created"] if missing else []))
                raise RagbenchError(f"{self.client_pods - len(pods) + len(waiting)} of {self.client_pods} client "
                                    f"pods had not started by the agreed start: {what}")
            time.sleep(POLL_S)

    def _collect(self) -> list[ShardResult]:
        """Each pod's result as its container ends; stops at the first failed pod."""
        results: dict[int, ShardResult] = {}
        pods = {_index(p): p for p in self.pods}
        while len(results) < len(pods):
            for i, pod in pods.items():
                if i in results:
                    continue
                try:
                    remote = self.pod_manager.read_pod(pod)
                except Exception as exc:  # deleted under us (eviction, someone's kubectl)
                    results[i] = ShardResult(i, pod=pod.metadata.name, problem=f"the pod could not be read "
                                             f"({type(exc).__name__}: {str(exc)[:200]})")
                    return list(results.values())
                state, reason = _state(remote)
                if state in ("ok", "failed"):
                    results[i] = self._result(i, remote, reason)
                    if state == "failed":
                        self.log.error("client pod %d (%s) failed: %s", i, pod.metadata.name, reason)
                        return list(results.values())
            if len(results) < len(pods):
                time.sleep(POLL_S)
        return list(results.values())

    def _result(self, index: int, pod: k8s.V1Pod, reason: str | None) -> ShardResult:
        name = pod.metadata.name
        try:
            self.pod_manager.fetch_requested_container_logs(pod=pod, containers=BASE, follow_logs=False)
        except Exception as exc:  # the logs are a convenience; the result is what counts
            self.log.warning("could not read the logs of %s: %s", name, exc)
        try:
            raw = self.pod_manager.extract_xcom(pod)
        except Exception as exc:
            return ShardResult(index, pod=name, problem=f"its result could not be read ({reason or 'ended'}; "
                                                        f"{type(exc).__name__}: {str(exc)[:200]})")
        if raw is None or raw.rstrip() == EMPTY_XCOM_RESULT:
            return ShardResult(index, pod=name, problem=f"it wrote no result ({reason or 'exit code 0'})")
        return ShardResult(index, json.loads(raw), pod=name)

    def _delete_job(self) -> None:
        try:
            self.job_client.delete_namespaced_job(name=self.job.metadata.name, namespace=self.job.metadata.namespace,
                                                  propagation_policy="Background")  # its pods go with it
        except Exception as exc:  # the TTL removes it later
            self.log.warning("could not delete Job %s (it removes itself %d s after it ends): %s",
                             self.job.metadata.name, JOB_TTL_S, exc)

