"""Results that travel: result documents in the target's object store, references in XCom.

A North-South document holds every raw request record and can reach megabytes, more than XCom
(rows in Airflow's metadata database) should carry. When a target sets ``results_store`` (any
fsspec URL), each step writes its document to ``<results_store>/<run id>/<target>/<step>.json``:
step pods with the workload CLI's ``--results-store``, the orchestrator's North-South task through
Airflow's ObjectStoragePath. XCom then carries a reference (workload.results.reference: the URL,
size and SHA-256), and whoever needs the document (the load task, the North-South tasks reading
the deploy step's endpoint) reads it back through ObjectStoragePath, checking size and digest.
Without a store, documents go through XCom as before.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ragbench.errors import RagbenchError
from ragbench.paths import safe_name
from ragbench.targets import Target
from workload.results import document_bytes, is_reference, reference

__all__ = ["is_reference", "publish", "resolve", "run_prefix"]


def run_prefix(target: Target, run_id: str) -> str | None:
    """Where this run's documents of this target go, or None when the target has no store."""
    if not target.results_store:
        return None
    return f"{target.results_store.rstrip('/')}/{safe_name(run_id)}/{target.name}"


def _path(url: str, conn_id: str | None = None):
    from airflow.sdk import ObjectStoragePath  # the scheme's filesystem (and connection) are Airflow's

    return ObjectStoragePath(url, conn_id=conn_id)


def _make_parent(path) -> None:
    """A local folder's parents; nothing on an object store, where "mkdir" would create a missing
    bucket instead of reporting it."""
    if path.protocol in ("file", "local", ""):
        path.parent.mkdir(parents=True, exist_ok=True)


def has_filesystem(url: str) -> bool:
    """This Airflow can open the URL's scheme (its provider and fsspec package are installed)."""
    from airflow.sdk.io import has_fs

    return has_fs(url.split("://", 1)[0])


def publish(doc: dict[str, Any], target: Target, run_id: str) -> dict[str, Any]:
    """What a task running in the orchestrator returns through XCom: the document itself, or,
    with a store, a reference to it there."""
    prefix = run_prefix(target, run_id)
    if prefix is None:
        return doc
    url = f"{prefix}/{doc['step']}.json"
    data = document_bytes(doc)
    try:
        path = _path(url, target.results_store_conn_id)
        _make_parent(path)
        path.write_bytes(data)
    except Exception as exc:  # the scheme's provider, credentials, the network
        raise RagbenchError(f"could not write the {doc['step']} document to {url}: {_one_line(exc)}") from None
    return reference(doc, url, data)


def resolve(value: dict[str, Any] | None, conn_id: str | None = None) -> dict[str, Any] | None:
    """A document from what a step returned: itself, or the document a reference points to (read
    with the target's store connection ``conn_id``)."""
    if not is_reference(value):
        return value
    url = value["url"]
    try:
        data = _path(url, conn_id).read_bytes()
    except Exception as exc:
        raise RagbenchError(f"cannot read the {value.get('step')} document at {url}: {_one_line(exc)}") from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != value.get("bytes") or digest != value.get("sha256"):
        raise RagbenchError(f"the {value.get('step')} document at {url} is not the one the step wrote "
                            f"({len(data)} bytes, sha256 {digest[:12]}; expected {value.get('bytes')} bytes, "
                            f"sha256 {str(value.get('sha256'))[:12]})")
    return json.loads(data)


def probe(target: Target) -> str:
    """Write, read back and delete a small object under the target's store prefix, as the run will;
    return what was done. Raises RagbenchError with the reason and the fix."""
    import time
    import uuid

    url = f"{target.results_store.rstrip('/')}/_preflight/{uuid.uuid4().hex}.json"
    if not has_filesystem(url):
        scheme = url.split("://", 1)[0]
        hint = {"gs": "install apache-airflow-providers-google and gcsfs in the Airflow image, or use GCS "
                      "through its S3-compatible endpoint (docs/kubernetes.md, \"Results that travel\")"}
        raise RagbenchError(f"this Airflow has no filesystem for {scheme}:// - "
                            + hint.get(scheme, f"install the Airflow provider and fsspec package for {scheme}://"))
    data = b'{"probe": true}'
    t0 = time.perf_counter()
    try:
        path = _path(url, target.results_store_conn_id)
        _make_parent(path)
        path.write_bytes(data)
        back = path.read_bytes()
        path.unlink()
    except Exception as exc:  # no bucket, no credentials, no network
        raise RagbenchError(f"cannot write to {target.results_store}: {_one_line(exc)} - check the bucket, "
                            f"and the credentials of {target.results_store_conn_id or 'the environment'}") from None
    if back != data:
        raise RagbenchError(f"{target.results_store} returned other bytes than were written")
    return f"wrote, read back and deleted a probe under {target.results_store} ({(time.perf_counter() - t0) * 1000:.0f} ms)"


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
