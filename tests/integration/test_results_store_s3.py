"""Results that travel through S3: the step pod writes its document with s3fs (credentials and the
endpoint from its environment, as the target's ``results_store_secret`` gives them), the
orchestrator reads it back through Airflow's ObjectStoragePath with the target's
``results_store_conn_id`` (an `aws` connection naming the endpoint). The S3 server is moto's, a
real S3 protocol server on 127.0.0.1: S3, Linode Object Storage and GCS's XML API speak the same."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ragbench import preflight, results_store
from ragbench.errors import RagbenchError
from workload.results import REF_SCHEMA, result_document

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-12-03T08:00:00+00:00"
KEYS = {"AWS_ACCESS_KEY_ID": "ragbench-test", "AWS_SECRET_ACCESS_KEY": "ragbench-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_server():
    from moto.server import ThreadedMotoServer

    from ragbench.pgserver import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_target(s3_server, tmp_path, monkeypatch, lab_target):
    """A cluster target whose results store is a bucket on the local S3 server, read by the
    orchestrator through the Airflow connection `results_s3` (and nothing else: the endpoint is not
    in this process's environment)."""
    import boto3

    bucket = f"ragbench-{os.getpid()}-{tmp_path.name[-8:].lower().replace('_', '-')}"
    boto3.client("s3", endpoint_url=s3_server, **_boto_keys()).create_bucket(Bucket=bucket)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", *KEYS):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_RESULTS_S3", json.dumps({
        "conn_type": "aws", "login": KEYS["AWS_ACCESS_KEY_ID"], "password": KEYS["AWS_SECRET_ACCESS_KEY"],
        "extra": {"endpoint_url": s3_server, "region_name": "us-east-1"}}))
    return lab_target(f'results_store: "s3://{bucket}/ragbench", results_store_conn_id: results_s3, '
                      'results_store_secret: ragbench-results-store')


def _boto_keys() -> dict:
    return {"aws_access_key_id": KEYS["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": KEYS["AWS_SECRET_ACCESS_KEY"],
            "region_name": "us-east-1"}


def _write_as_a_step_pod(doc: dict, prefix: str, endpoint: str, tmp_path) -> dict:
    """What a step pod does: the workload's result writer in a process whose environment holds the
    store's keys and endpoint (the pod gets them from the target's results_store_secret)."""
    src, out = tmp_path / "doc.json", tmp_path / "return.json"
    src.write_text(json.dumps(doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env.update(KEYS, AWS_ENDPOINT_URL_S3=endpoint)
    code = ("import json, sys; from workload.results import write_result; "
            "write_result(json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3])")
    subprocess.run([sys.executable, "-c", code, str(src), str(out), prefix], env=env, check=True, timeout=120)
    return json.loads(out.read_text())


def test_a_pod_writes_to_s3_and_the_orchestrator_reads_it_back(s3_target, s3_server, tmp_path):
    doc = result_document("north-south", {"scenarios": [{"scenario": "concurrent-4", "records": [
        {"index": i, "token_times": [0.1 * k for k in range(64)]} for i in range(300)]}]},
        started_at="2026-12-03T08:00:00+00:00")
    prefix = results_store.run_prefix(s3_target, RUN_ID)
    ref = _write_as_a_step_pod(doc, prefix, s3_server, tmp_path)
    assert ref["schema"] == REF_SCHEMA
    assert ref["url"] == f"{prefix}/north-south.json" and ref["url"].startswith("s3://")
    assert results_store.resolve(ref, s3_target.results_store_conn_id) == doc
    # the orchestrator's own North-South task publishes through the same connection
    own = results_store.publish(result_document("deploy-cluster", {"endpoint": "http://198.51.100.7"},
                                                started_at="2026-12-03T08:00:00+00:00"), s3_target, RUN_ID)
    assert own["url"] == f"{prefix}/deploy-cluster.json"
    from ragbench import cluster

    assert cluster.deploy_endpoint("lab", own) == "http://198.51.100.7"  # read with the target's connection


def test_without_the_connection_the_read_fails_saying_where(s3_target, s3_server, tmp_path):
    prefix = results_store.run_prefix(s3_target, RUN_ID)
    ref = _write_as_a_step_pod(result_document("east-west", {"x": 1}, started_at="2026-12-03T08:00:00+00:00"),
                               prefix, s3_server, tmp_path)
    with pytest.raises(RagbenchError, match=r"^cannot read the east-west document at s3://"):
        results_store.resolve(ref, None)  # no endpoint, no keys: the real AWS is not reachable here


def test_preflight_probes_the_store(s3_target):
    message = results_store.probe(s3_target)
    assert message.startswith(f"wrote, read back and deleted a probe under {s3_target.results_store}")
    import boto3

    bucket = s3_target.results_store.removeprefix("s3://").split("/")[0]
    listed = boto3.client("s3", endpoint_url=json.loads(os.environ["AIRFLOW_CONN_RESULTS_S3"])["extra"]["endpoint_url"],
                          **_boto_keys()).list_objects_v2(Bucket=bucket)
    assert listed.get("KeyCount", 0) == 0  # the probe leaves nothing behind
    finding = preflight.check_results_store(s3_target)
    assert finding.level == preflight.OK and finding.check == "results-store"


def test_preflight_names_a_missing_bucket(s3_target):
    missing = s3_target.model_copy(update={"results_store": "s3://no-such-bucket-ragbench/x"})
    finding = preflight.check_results_store(missing)
    assert finding.level == preflight.ERROR and finding.check == "results-store"
    assert "cannot write to s3://no-such-bucket-ragbench/x" in finding.message
    assert "NoSuchBucket" in finding.message or "does not exist" in finding.message
    assert "results_s3" in finding.message  # says whose credentials were used


def test_preflight_names_a_scheme_this_airflow_cannot_open(s3_target):
    gcs = s3_target.model_copy(update={"results_store": "gs://bucket/ragbench"})
    finding = preflight.check_results_store(gcs)
    assert finding.level == preflight.ERROR
    assert "this Airflow has no filesystem for gs://" in finding.message
    assert "S3-compatible endpoint" in finding.message


def test_no_store_no_finding():
    from ragbench.targets import Target

    target = Target(name="lab", kind="kubernetes", provider="generic", connection_id="c",
                    overlay="k8s/overlays/generic")
    assert preflight.check_results_store(target) is None
    with pytest.raises(ValueError, match="need results_store"):
        Target(name="lab", kind="kubernetes", provider="generic", connection_id="c",
               overlay="k8s/overlays/generic", results_store_conn_id="results_s3")


def test_a_pod_never_creates_a_missing_bucket(s3_target, s3_server, tmp_path):
    import boto3

    with pytest.raises(subprocess.CalledProcessError):
        _write_as_a_step_pod(result_document("ingest", {}, started_at="2026-12-03T08:00:00+00:00"),
                             "s3://no-such-bucket-ragbench/x", s3_server, tmp_path)
    names = [b["Name"] for b in boto3.client("s3", endpoint_url=s3_server, **_boto_keys()).list_buckets()["Buckets"]]
    assert "no-such-bucket-ragbench" not in names
