"""The browser vantage point's document (workload CLI `browser-north-south`) in a real PostgreSQL: its
`browser` scenario sits next to the load generator's, never replaces the headline, and loads
idempotently in the order the pipeline loads a target's steps (North-South first)."""

from __future__ import annotations

import copy

import pytest
import sqlalchemy as sa
from test_loader import RUN_ID, STARTED, load_local_target, ns_doc, scorecard

from ragbench import db, pipeline
from ragbench.steps import STEPS
from workload.bench.northsouth import NorthSouthConfig
from workload.browser.northsouth import browser_result, page_record
from workload.results import result_document

pytestmark = pytest.mark.integration


@pytest.fixture
def migrated(engine):
    db.migrate(engine)
    return engine


def page_run(t_sent: float, ttft: float, total: float, tokens: int, **kw) -> dict:
    """A record as the chat page keeps it: milliseconds of performance.now()."""
    times = [t_sent + ttft + (total - ttft) * i / max(tokens - 1, 1) for i in range(tokens)]
    return {"prompt_chars": 30, "t_sent": t_sent, "t_first_byte": t_sent + 5, "t_first_token": t_sent + ttft,
            "token_times": times, "t_end": t_sent + total, "http_status": 200, "request_id": f"r{t_sent}",
            "server_request_id": f"r{t_sent}", "replica_id": "vm", "model_id": "m", "k": 4,
            "output_tokens": tokens, "output_tokens_source": "server_usage",
            "server_timings": {"ttft_ms": ttft - 3}, "error_code": None, "server_error_code": None,
            "error_message": None, **kw}


def browser_doc() -> dict:
    base = 1000.0  # the page's clock when the step started
    raws = [page_run(1100, 300, 900, 8), page_run(2100, 250, 800, 8), page_run(3100, 350, 1000, 8),
            page_run(4200, 0, 60, 0, t_first_token=None, token_times=[], output_tokens=None,
                     output_tokens_source=None, error_code="server_error", server_error_code="llm_unavailable",
                     error_message="vLLM is down")]
    records = [page_record(raw, i, f"q{i}", i == 0, base) for i, raw in enumerate(raws)]
    data = browser_result("http://127.0.0.1:18000", NorthSouthConfig(warmup_requests=1), 3, records,
                          1790000100.0, "max_requests", "HeadlessChrome")
    return result_document("browser-north-south", data, started_at=STARTED)


def scenarios(engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT s.scenario, s.headline, s.requests, s.completed, s.errored, s.ttft_p50_ms, s.e2e_p50_ms, "
            " (SELECT count(*) FROM ns_requests r WHERE r.target_run_id = s.target_run_id "
            "  AND r.scenario = s.scenario) AS records "
            "FROM ns_summaries s JOIN target_runs t USING (target_run_id) WHERE t.run_id = :r"),
            {"r": RUN_ID}).mappings()
        return {r["scenario"]: dict(r) for r in rows}


def test_page_records_become_request_records_in_seconds():
    doc = browser_doc()
    sc = doc["data"]["scenarios"][0]
    first = sc["records"][1]
    assert first["t_sent"] == pytest.approx(1.1) and first["t_first_token"] == pytest.approx(1.35)
    assert sc["summary"]["ttft_ms"]["p50"] == pytest.approx(300)  # 250, 350 (the warm-up's 300 excluded)
    assert sc["summary"]["errored"] == 1 and sc["summary"]["requests"] == 3
    assert doc["data"]["vantage"] == "browser" and sc["headline"] is False


def test_browser_scenario_loads_next_to_the_headline(migrated):
    ns, _ = ns_doc()
    load_local_target(migrated, [ns])
    card = scorecard(migrated)
    load_local_target(migrated, [browser_doc()])
    found = scenarios(migrated)
    assert set(found) == {"concurrent-2", "browser"}
    assert found["concurrent-2"]["headline"] is True and found["browser"]["headline"] is False
    assert found["browser"]["records"] == 4  # warm-up and failure kept, as for the load generator
    assert (found["browser"]["completed"], found["browser"]["errored"]) == (2, 1)
    assert found["browser"]["ttft_p50_ms"] == pytest.approx(300)
    assert scorecard(migrated) == card  # the headline still comes from the load generator


def test_a_document_that_claims_the_headline_does_not_get_it(migrated):
    ns, _ = ns_doc()
    claiming = browser_doc()
    claiming["data"]["scenarios"][0]["headline"] = True
    load_local_target(migrated, [ns, claiming])
    assert {s: r["headline"] for s, r in scenarios(migrated).items()} == {"concurrent-2": True, "browser": False}


def test_reloading_in_step_order_is_idempotent(migrated):
    ns, _ = ns_doc()
    docs = [ns, browser_doc()]
    load_local_target(migrated, docs)
    first = scenarios(migrated)
    load_local_target(migrated, copy.deepcopy(docs))  # a retried load_results
    assert scenarios(migrated) == first
    load_local_target(migrated, [browser_doc()])  # the browser document alone, again
    assert scenarios(migrated) == first


def test_the_pipeline_loads_the_browser_step_after_north_south():
    order = [s.name for s in STEPS]
    assert order.index("north_south") < order.index("browser_north_south")


def test_an_enabled_browser_step_without_a_result_fails_the_local_target(migrated, monkeypatch):
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", migrated.url.render_as_string(hide_password=False))
    ns, _ = ns_doc()
    from ragbench import loader

    loader.record_run(migrated, RUN_ID, "ragbench", STARTED, "manual", {}, None)
    refs = {"north_south": ns}
    off = pipeline.load_target_results("local", RUN_ID, {"browser_requests": 0}, STARTED, refs)
    assert "browser_north_south" not in off["failed_steps"]
    on = pipeline.load_target_results("local", RUN_ID, {"browser_requests": 3}, STARTED, refs,
                                      {"browser_north_south": "the browser failed: no Chromium"})
    assert "browser_north_south" in on["failed_steps"]
    with migrated.connect() as conn:
        error = conn.execute(sa.text("SELECT error FROM target_runs WHERE run_id = :r"), {"r": RUN_ID}).scalar_one()
    assert "browser_north_south failed: the browser failed: no Chromium" in error
