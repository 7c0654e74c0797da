"""North-South from N client pods on a cluster target: shards of one schedule, merged.

With ``north_south_from: cluster``, the load comes from one Kubernetes Indexed Job of ``client_pods``
pods (completions = parallelism = N; ragbench.pod_spec builds and watches it). Pod I runs shard I of
N of the one global schedule (``--shard $(JOB_COMPLETION_INDEX)/N``: Kubernetes expands the index the
Job controller gives each pod), and every pod gets the same ``--start-at``: the time the task renders,
just before it creates the Job, plus :data:`START_GRACE_S`. Each pod warms up, sleeps until then and
runs; one that was ready more than 5 s late fails with its lateness. The task then checks that every
shard came back, unbroken, and merges them (``workload.bench.merge.merge_shard_documents``) into one
North-South document, returned like a single pod's. With N = 1 the one pod runs the whole schedule,
no shard flags, and its document is returned as it is (a sweep needs exactly that: its levels cannot
be synchronised across pods).

Pure functions of the params and the shards' results; no Kubernetes client, no Airflow.
"""

from __future__ import annotations

from typing import Any

from ragbench.errors import RagbenchError

# The Job controller's index of each pod: an environment variable of the container (since Kubernetes
# 1.22) and the annotation batch.kubernetes.io/job-completion-index.
INDEX_ENV = "JOB_COMPLETION_INDEX"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# From the Job's creation to the agreed start: scheduling, the container's start (the workload image is
# already on the CPU nodes: the Ray and iperf3 pods run it), the public endpoint's /readyz and the
# shard's warm-up. A shard not ready by then fails with its lateness, and so does the task.
START_GRACE_S = 120
# The load generator's own limit (the --start-at contract): a shard ready later than this fails.
LATE_LIMIT_S = 5.0


def client_pods(params: dict) -> int:
    """How many client pods run the North-South load (1 unless the run says more)."""
    value = params.get("client_pods")
    return 1 if value is None else int(value)


def check_params(target: str, params: dict) -> None:
    """Refuse what client pods cannot do, before anything is deployed: a sweep steps its levels one
    after another, and N pods have no channel to agree when a level ends."""
    from ragbench.cluster import north_south_from

    n = client_pods(params)
    if n > 1 and north_south_from(params) == "cluster" and params.get("load_mode") == "sweep":
        raise RagbenchError(f"{target}: client_pods {n} cannot run a sweep (the pods cannot synchronise its "
                            "levels): use client_pods 1 for a sweep, or load_mode concurrent or poisson")


def shard_arguments(count: int, start_at: float | None) -> list[str]:
    """The workload CLI's shard flags of every client pod (the same list in each: Kubernetes puts the
    pod's own index in place of $(JOB_COMPLETION_INDEX)); none for a single pod."""
    if count == 1:
        return []
    if start_at is None:
        raise RagbenchError("client pods need an agreed start (--start-at)")
    return ["--shard", f"$({INDEX_ENV})/{count}", "--start-at", f"{start_at:.3f}"]


def shard_results_store(prefix: str | None, count: int) -> str | None:
    """Where a client pod writes its document: shards apart (each writes ``<store>/north-south.json``),
    the merged document then takes the step's usual place."""
    if prefix is None or count == 1:
        return prefix
    return f"{prefix}/north-south-shards/$({INDEX_ENV})"


class ShardResult:
    """What came back from one client pod: its XCom value (a document or a reference to one), or
    why nothing came back (the pod never started, its result could not be read)."""

    def __init__(self, index: int, value: Any = None, *, pod: str = "", problem: str | None = None) -> None:
        self.index, self.value, self.pod, self.problem = index, value, pod, problem

    def __repr__(self) -> str:
        return f"ShardResult({self.index}, pod={self.pod!r}, problem={self.problem!r})"


def _where(r: ShardResult, count: int) -> str:
    return f"shard {r.index}/{count}" + (f" (pod {r.pod})" if r.pod else "")


def merge_results(target: str, results: list[ShardResult], count: int) -> dict:
    """The North-South document of the run from its client pods' results.

    Fails (RagbenchError, one line) when any shard is missing, failed, or started late, naming the
    shard and its own reason, first the failures a shard reported itself; never merges a smaller set.
    """
    from ragbench.results_store import resolve

    by_index: dict[int, ShardResult] = {}
    for r in results:
        if r.index in by_index or not 0 <= r.index < count:
            raise RagbenchError(f"north_south on {target}: client pod index {r.index} came back twice or is "
                                f"outside 0..{count - 1}")
        by_index[r.index] = r
    docs, failed, unreadable = [], [], []
    for i in range(count):
        r = by_index.get(i)
        if r is None:
            unreadable.append(f"shard {i}/{count}: no result (the Job stopped before it finished)")
            continue
        if r.problem or r.value is None:
            unreadable.append(f"{_where(r, count)}: {r.problem or 'no result document'}")
            continue
        try:
            doc = resolve(r.value)
        except RagbenchError as exc:
            unreadable.append(f"{_where(r, count)}: {exc}")
            continue
        if not isinstance(doc, dict) or doc.get("schema") != "ragbench.result/v1":
            unreadable.append(f"{_where(r, count)}: not a result document")
            continue
        if not doc.get("ok"):
            failed.append(f"{_where(r, count)} failed: {doc.get('error') or 'no reason given'}")
            continue
        docs.append(doc)
    problems = failed + unreadable  # a shard's own reason first: the others usually follow from it
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise RagbenchError(f"north_south on {target}: {problems[0]}{more}; "
                            f"{len(docs)} of {count} client pods succeeded, nothing merged")
    if count == 1:
        return docs[0]
    for doc in docs:  # the load generator refuses a late start itself; this guards the contract
        late = ((doc.get("data") or {}).get("shard") or {}).get("late_by_s")
        if late is not None and late > LATE_LIMIT_S:
            i = doc["data"]["shard"].get("index")
            raise RagbenchError(f"north_south on {target}: shard {i}/{count} started {late:.1f} s after the "
                                f"agreed start (limit {LATE_LIMIT_S:.0f} s), nothing merged")
    return _merge(target, docs)


def _merge(target: str, docs: list[dict]) -> dict:
    """One North-South result document from the shards' (each checked ok): the merged data, started
    when the first shard started."""
    from workload.bench.merge import MergeError, merge_shard_documents
    from workload.errors import StepError
    from workload.results import result_document

    try:
        data = merge_shard_documents(docs)
    except (MergeError, StepError) as exc:
        raise RagbenchError(f"north_south on {target}: the client pods' documents do not merge: {exc}") from None
    return result_document(docs[0]["step"], data, started_at=min(d["started_at"] for d in docs))
