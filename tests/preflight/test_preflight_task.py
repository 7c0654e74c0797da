"""The preflight task of a cluster target's group: it fails at once on an error finding, the
teardown then skips (nothing was applied), and the scorecard names the failure and its findings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ragbench import preflight
from ragbench.steps import STEPS
from ragbench.targets import load_targets

pytestmark = pytest.mark.unit


class RecordingTI:
    def __init__(self) -> None:
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key, value, **_):
        self.pushed[key] = value


def test_the_gate_passes_a_healthy_cluster(standin):
    result = preflight.gate(load_targets().get("aws-eks"), standin.client())
    assert result["target"] == "aws-eks"
    assert all(line.startswith("OK ") for line in result["findings"])
    assert len(result["findings"]) == 12


def test_a_failed_preflight_is_the_targets_error_on_the_scorecard(standin, pg_url_factory, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from ragbench import db, loader, pipeline, scorecard
    from ragbench.step_errors import ERROR_KEY, recorded

    standin.cluster.secrets.clear()
    standin.cluster.crds.clear()
    ti = RecordingTI()
    with pytest.raises(AirflowFailException) as info, recorded(ti):  # AirflowFailException: no retry
        preflight.gate(load_targets().get("aws-eks"), standin.client())
    message = str(info.value)
    assert message.startswith("preflight of aws-eks found 2 error(s): kuberay: CRD rayservices.ray.io is missing")
    assert "; token: Secret ragbench-api-token is missing in ragbench - " in message
    assert ti.pushed == {ERROR_KEY: message}

    monkeypatch.setenv("RAGBENCH_DATABASE_URL", pg_url_factory())
    engine = db.connect()
    db.migrate(engine)
    run_id, started = "manual__2026-12-02T17:00:00+00:00", datetime(2026, 12, 2, 17, tzinfo=UTC)
    params = {"targets": ["aws-eks"]}
    loader.record_run(engine, run_id, "rag_benchmark", started, "manual", params, None)
    # what the load task gets after a failed preflight: no step produced anything
    result = pipeline.load_target_results("aws-eks", run_id, params, started, {s.name: None for s in STEPS},
                                          {"preflight": ti.pushed[ERROR_KEY]})
    assert result["failed_steps"] == ["deploy", "ingest", "north_south", "east_west"]
    (row,) = scorecard.scorecard_rows(engine, run_id)
    assert row["status"] == "failed"
    assert row["error"].startswith(f"preflight failed: {message}; steps without a result: deploy")
    assert "aws-eks FAILED in deploy, ingest, north_south, east_west: preflight failed: preflight of aws-eks " \
           "found 2 error(s): kuberay: CRD rayservices.ray.io is missing" in scorecard.format_table([row])
