"""The chat page (GET /ui) in headless Chromium against the real local stack (vLLM on CPU, Ray Serve,
Haystack, embedded Qdrant), with the bearer token: a question streams token by token, the page shows
the TTFT and total time it measured, and an `error` event (vLLM stopped) is shown as an error, not a
hang. Then the browser vantage point step (`browser-north-south`) against the same service.

Uses the session's ``guarded_service``; vLLM is stopped last and started again before the module
ends, so the tests that share the service find it as it was. Skipped only when Debian's chromium is
missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from live_service import API_TOKEN, wait_until

from workload.browser.chat_driver import chromium_path, open_chat_page
from workload.local.processes import http_ok

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not chromium_path().exists(), reason=f"no Chromium at {chromium_path()}")]

QUESTION = "Which taint do GPU nodes carry?"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def service(guarded_service):
    return guarded_service


@pytest.fixture(scope="module")
def chat(service):
    with open_chat_page(service.service_url, API_TOKEN) as page:
        yield page


def test_page_and_its_files_are_served_from_the_service(service):
    with httpx.Client(base_url=service.service_url, timeout=10) as client:
        root = client.get("/", follow_redirects=False)
        assert root.status_code == 307 and root.headers["location"] == "/ui"
        page = client.get("/ui")  # the page itself needs no token; its requests do
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        assert '<script src="/ui/chat.js"' in page.text
        assert client.get("/ui/chat.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/ui/chat.css").headers["content-type"].startswith("text/css")
        assert client.get("/ui/..%2Fapp.py").status_code == 404
        assert client.get("/ui/app.py").status_code == 404


def test_answer_streams_with_browser_measured_ttft_and_total(chat):
    page = chat.page
    page.fill("#question", QUESTION)
    page.fill("#max-tokens", "400")  # long enough to be seen while it streams
    page.set_checked("#ignore-eos", True)
    page.click("#ask-button")
    # Tokens are on the page while the request is still streaming (before `done`).
    # (Functions, not expressions: the page's Content-Security-Policy forbids evaluating strings.)
    # The state and the text are read in one call in the page: read apart, a fast answer can be
    # `done` by the time the second read arrives.
    partial = page.wait_for_function(
        "() => { const answer = document.getElementById('answer').textContent;"
        " return document.getElementById('status').dataset.state === 'streaming' && answer.length > 0"
        " ? answer : false; }", timeout=60_000).json_value()
    page.wait_for_function("() => ['done', 'error'].includes(document.getElementById('status').dataset.state)",
                           timeout=120_000)
    assert page.get_attribute("#status", "data-state") == "done", page.text_content("#error")
    final = page.text_content("#answer")
    assert len(final) > len(partial) and final.startswith(partial)

    ttft, total = float(page.text_content("#client-ttft")), float(page.text_content("#client-total"))
    assert 0 < ttft < total
    assert float(page.text_content("#server-ttft")) > 0  # the server's own, beside the browser's
    assert float(page.text_content("#server-total")) > 0
    assert page.text_content("#server-tokens").startswith("400")  # done.token_count
    assert page.locator("#sources li").count() >= 1
    assert "gpu.md" in page.text_content("#sources") or "net.txt" in page.text_content("#sources")

    rec = page.evaluate("window.ragbenchChat.runs[window.ragbenchChat.runs.length - 1]")
    assert rec["error_code"] is None and rec["output_tokens"] == 400
    assert rec["t_sent"] < rec["t_first_byte"] <= rec["t_first_token"] < rec["t_end"]
    assert len(rec["token_times"]) > 1 and rec["token_times"][-1] <= rec["t_end"]
    assert rec["request_id"] and rec["request_id"] == rec["server_request_id"]
    assert abs((rec["t_first_token"] - rec["t_sent"]) - ttft) < 0.2  # what is displayed is what was measured


def test_upload_through_the_page(chat, tmp_path):
    doc = tmp_path / "runbook.md"
    doc.write_text("# Runbook\n\nWhen TTFT regresses, check the KV cache size first. " * 20)
    chat.page.set_input_files("#files", str(doc))
    chat.page.click("#upload-button")
    chat.page.wait_for_function(
        "() => ['done', 'error'].includes(document.getElementById('upload-status').dataset.state)", timeout=60_000)
    assert chat.page.text_content("#upload-status").startswith("ingested 1 document(s)")


def test_wrong_token_is_shown_as_an_error(chat):
    chat.set_token("wrong")
    try:
        rec = chat.ask(QUESTION, max_tokens=4, timeout_s=30)
    finally:
        chat.set_token(API_TOKEN)
    assert rec["error_code"] == "http_error" and rec["http_status"] == 401
    assert chat.page.get_attribute("#status", "data-state") == "error"
    assert "401 unauthorized" in chat.page.text_content("#error")


def test_browser_north_south_step_writes_a_north_south_document(service, tmp_path):
    """The CLI step: N questions through the page; one `browser` scenario, never the headline, with
    RequestRecord-shaped records whose TTFT is positive and below their total."""
    out = tmp_path / "browser.json"
    config = {"warmup_requests": 1, "max_tokens": 16, "k": 2, "slo": {"ttft_ms": 60000, "tpot_ms": 10000}}
    env = {**os.environ, "RAGBENCH_API_TOKEN": API_TOKEN}
    proc = subprocess.run([sys.executable, "-m", "workload.cli", "browser-north-south", "--endpoint",
                           service.service_url, "--requests", "3", "--config", json.dumps(config), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["ok"] and doc["step"] == "browser-north-south"
    data = doc["data"]
    assert data["vantage"] == "browser" and len(data["scenarios"]) == 1
    scenario = data["scenarios"][0]
    assert scenario["scenario"] == "browser" and scenario["headline"] is False
    summary = scenario["summary"]
    assert summary["requests"] == 3 and summary["completed"] == 3 and summary["errored"] == 0
    assert 0 < summary["ttft_ms"]["p50"] < summary["e2e_ms"]["p50"]
    assert summary["output_tokens"] == 3 * 16
    from workload.bench.records import RequestRecord

    records = [RequestRecord.from_dict(r) for r in scenario["records"]]
    assert [r.warmup for r in records] == [True, False, False, False]
    assert all(r.ok and 0 < r.ttft_ms < r.e2e_ms and r.output_tokens_source == "server_usage" for r in records)
    assert all(r.k == 2 and r.scenario == "browser" for r in records)
    assert len({r.prompt_id for r in records}) == 4  # no question asked twice
    assert all(r.request_id == r.server_request_id for r in records)


def test_browser_north_south_step_refuses_a_bad_count(service, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "workload.cli", "browser-north-south", "--endpoint",
                           service.service_url, "--requests", "0", "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "0 is less than 1" in proc.stderr


def test_llm_stopped_is_shown_as_an_error_not_a_hang(service, chat):
    assert service.llm.stop()
    try:
        started = time.monotonic()
        rec = chat.ask(QUESTION, max_tokens=8, timeout_s=60)
        assert time.monotonic() - started < 60  # the `error` event ended it, not the page's own timeout
        assert rec["error_code"] == "server_error" and rec["server_error_code"] == "llm_unavailable"
        assert chat.page.get_attribute("#status", "data-state") == "error"
        error = chat.page.locator("#error")
        assert error.is_visible() and "llm_unavailable" in error.text_content()
        assert chat.page.get_attribute("#ask-button", "disabled") is None  # ready for the next question
        assert float(chat.page.text_content("#client-total")) > 0
    finally:  # the shared service gets its LLM back
        service.start_llm(service.build_model())
        assert wait_until(lambda: http_ok(f"{service.service_url}/readyz", timeout_s=5), 60), "not ready again"
