"""The Prometheus queries' rendering, resolution and windows (the queries themselves run against a
real Prometheus in tests/workload/test_telemetry_live.py; here a stand-in answers with the exact
shape of Prometheus's HTTP API and records what was asked)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from workload.telemetry.prometheus import (
    MAX_POINTS,
    QUERIES,
    PrometheusConfig,
    collect,
    promql_duration,
    step_for,
    window_for,
)

pytestmark = pytest.mark.unit


def test_queries_name_the_namespace_and_cover_gpu_cpu_memory():
    rendered = {q.metric: PrometheusConfig("http://p:9090", namespace="bench").render(q, 7.5) for q in QUERIES}
    assert set(rendered) == {"gpu_util_percent", "gpu_memory_bytes", "cpu_percent", "memory_bytes"}
    for metric, expr in rendered.items():
        assert 'namespace="bench"' in expr, metric
        assert expr.count("(") == expr.count(")") and "{{" not in expr, metric
    assert "DCGM_FI_DEV_GPU_UTIL" in rendered["gpu_util_percent"]
    assert "DCGM_FI_DEV_FB_USED" in rendered["gpu_memory_bytes"]
    assert "rate(container_cpu_usage_seconds_total" in rendered["cpu_percent"]
    assert '[7500ms]' in rendered["cpu_percent"]  # the window asked for, to the millisecond
    assert "container_memory_working_set_bytes" in rendered["memory_bytes"]


def test_step_is_coarsened_to_stay_under_the_point_limit():
    assert step_for(0, 600, 5) == 5
    assert step_for(0, 86_400, 1) == 8  # a day at 1 s would be 86,400 points
    assert 86_400 / step_for(0, 86_400, 1) < MAX_POINTS


def test_windows_follow_the_scenario_duration():
    config = PrometheusConfig("http://p:9090", step_s=1.0, scrape_interval_s=15.0)
    # 15 s scenario: 1 s points; rate() cannot look back less than two scrapes (30 s), and says so
    short = window_for(1000.0, 1015.0, config)
    assert (short.step_s, short.rate_window_s) == (1.0, 30.0)
    assert short.rate_window_exceeds_scenario and short.rate_start == 1015.0
    # 10 min scenario: 20 s points, rate() over one step, starting one step into the window
    long = window_for(1000.0, 1600.0, config)
    assert (long.step_s, long.rate_window_s, long.rate_start) == (20.0, 30.0, 1030.0)
    assert not long.rate_window_exceeds_scenario
    hour = window_for(0.0, 3600.0, config)
    assert (hour.step_s, hour.rate_window_s, hour.rate_start) == (120.0, 120.0, 120.0)
    # a Prometheus scraping every second: a 15 s scenario gets 2 s rates from 2 s in
    fast = window_for(1000.0, 1015.0, PrometheusConfig("http://p:9090", step_s=1.0, scrape_interval_s=1.0))
    assert (fast.step_s, fast.rate_window_s, fast.rate_start) == (1.0, 2.0, 1002.0)
    assert promql_duration(2.0) == "2000ms" and promql_duration(0.0004) == "1ms"


class FakePrometheus(BaseHTTPRequestHandler):
    """Answers /api/v1/query_range as Prometheus does (a matrix of [unix time, "value"] points)
    and records every query's parameters."""

    asked: list[dict] = []

    def do_GET(self):  # noqa: N802 - the http.server interface
        url = urlparse(self.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        FakePrometheus.asked.append(params)
        if "bad_metric" in params["query"]:
            body = {"status": "error", "errorType": "bad_data", "error": "parse error at char 3"}
            status = 400
        else:
            body = {"status": "success", "data": {"resultType": "matrix", "result": [
                {"metric": {"container": "vllm", "namespace": "bench"},
                 "values": [[float(params["start"]), "40"], [float(params["end"]), "60"]]},
                {"metric": {"container": "ray-head"}, "values": [[float(params["end"]), "5"]]}]}}
            status = 200
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_prometheus():
    FakePrometheus.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePrometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_collect_queries_only_the_scenarios_window(fake_prometheus):
    config = PrometheusConfig(fake_prometheus, namespace="bench", step_s=1.0, scrape_interval_s=15.0)
    result = collect(config, 1000.0, 1600.0)
    asked = {p["query"]: p for p in FakePrometheus.asked}
    cpu = next(p for q, p in asked.items() if "container_cpu_usage_seconds_total" in q)
    assert "[30000ms]" in cpu["query"] and "[1m]" not in cpu["query"]
    assert (float(cpu["start"]), float(cpu["end"]), float(cpu["step"])) == (1030.0, 1600.0, 20.0)
    memory = next(p for q, p in asked.items() if "container_memory_working_set_bytes" in q)
    assert (float(memory["start"]), float(memory["end"]), float(memory["step"])) == (1000.0, 1600.0, 20.0)
    assert (result["step_s"], result["rate_window_s"], result["rate_window_exceeds_scenario"]) == (20.0, 30.0, False)
    assert result["window"] == {"start_epoch": 1000.0, "end_epoch": 1600.0}
    rows = {(r["metric"], r["component"]): r for r in result["rows"]}
    assert rows[("cpu_percent", "vllm")] == {"source": "prometheus", "component": "vllm", "metric": "cpu_percent",
                                                  "unit": "percent", "min": 40.0, "mean": 50.0, "max": 60.0,
                                                  "samples": 2}
    assert rows[("memory_bytes", "ray-head")]["mean"] == 5.0
    assert result["errors"] == [] and result["series"] == 2 * len(QUERIES)


def test_a_failing_query_is_recorded_and_the_others_still_run(fake_prometheus):
    from workload.telemetry.prometheus import Query

    queries = (Query("broken", "percent", "bad_metric{{namespace=\"{namespace}\"}}", "container"), QUERIES[3])
    result = collect(PrometheusConfig(fake_prometheus), 0.0, 20.0, queries=queries)
    assert len(result["errors"]) == 1 and "bad_data: parse error" in result["errors"][0]
    assert {r["metric"] for r in result["rows"]} == {"memory_bytes"}


def test_a_targets_prometheus_reaches_the_north_south_pod_and_only_that_step():
    from ragbench.cluster import pod_arguments
    from ragbench.steps import STEP_BY_NAME
    from ragbench.targets import Target

    common = {"name": "eks", "kind": "kubernetes", "provider": "aws-eks", "connection_id": "c",
              "overlay": "k8s/overlays/aws-eks", "namespace": "bench"}
    deploy = {"data": {"endpoint": "http://lb.example:8000"}}
    with_prom = Target(**common, prometheus_url="http://prometheus.monitoring:9090")
    args = pod_arguments(STEP_BY_NAME["north_south"], with_prom, {}, deploy)
    i = args.index("--prometheus-url")
    assert args[i:i + 4] == ["--prometheus-url", "http://prometheus.monitoring:9090", "--prometheus-namespace", "bench"]
    assert "--prometheus-url" not in pod_arguments(STEP_BY_NAME["north_south"], Target(**common), {}, deploy)
    assert "--prometheus-url" not in pod_arguments(STEP_BY_NAME["ingest"], with_prom, {}, deploy)


def test_prometheus_url_must_be_http():
    from ragbench.targets import Target

    with pytest.raises(ValueError, match="prometheus_url"):
        Target(name="x", kind="local", provider="local", prometheus_url="prometheus:9090")


def test_cli_builds_the_telemetry_plan(tmp_path, monkeypatch):
    from workload.cli import _telemetry_plan, build_parser

    monkeypatch.delenv("RAGBENCH_STATE_DIR", raising=False)
    parse = build_parser().parse_args
    base = ["north-south", "--endpoint", "http://lb:8000"]
    plan = _telemetry_plan(parse(base + ["--prometheus-url", "http://p:9090", "--prometheus-namespace", "ns",
                                         "--prometheus-step", "2"]))
    assert (plan.prometheus.url, plan.prometheus.namespace, plan.prometheus.step_s) == ("http://p:9090", "ns", 2)
    assert plan.prometheus.scrape_interval_s == 15.0
    plan = _telemetry_plan(parse(base + ["--prometheus-url", "http://p:9090", "--prometheus-scrape-interval", "30"]))
    assert plan.prometheus.scrape_interval_s == 30.0
    assert plan.process_roots == {} and plan.llm_metrics_url is None  # no local stack named
    assert _telemetry_plan(parse(base + ["--prometheus-url", "http://p:9090", "--no-telemetry"])).empty()
    # a state folder without running processes: nothing to sample
    assert _telemetry_plan(parse(base + ["--state-dir", str(tmp_path)])).empty()


def test_each_scenario_gets_the_prometheus_rows_of_its_own_window(fake_prometheus):
    """run_with_telemetry hands the observer to the load, which calls it around each scenario's
    measured part; after the run, each scenario is queried over its own window, not the step's."""
    import time

    from workload.telemetry.collect import TelemetryPlan, run_with_telemetry

    plan = TelemetryPlan(prometheus=PrometheusConfig(fake_prometheus, namespace="bench", step_s=1.0,
                                                     scrape_interval_s=1.0, settle_s=0.2))
    windows = {}

    def run(observer):  # what run_north_south does: warm-up, then the observed measured part
        scenarios = []
        for name in ("sweep-concurrent-1", "sweep-concurrent-2"):
            time.sleep(0.05)  # the TCP probe and warm-up: outside the window
            observer.measure_started(name)
            start = time.time()
            time.sleep(0.1)
            windows[name] = (start, time.time())
            scenarios.append({"scenario": name, **observer.measure_finished(name, *windows[name])})
        return {"scenarios": scenarios}

    data = run_with_telemetry(run, plan)
    assert "resources" not in data
    for sc in data["scenarios"]:
        start, end = windows[sc["scenario"]]
        prom = sc["resources"]["sources"]["prometheus"]
        assert prom["window"] == {"start_epoch": start, "end_epoch": end} == sc["resources"]["window"]
        assert prom["rate_window_exceeds_scenario"] is True  # 0.1 s is shorter than two 1 s scrapes
        assert {r["metric"] for r in sc["resources"]["rows"]} == {q.metric for q in QUERIES}
        # no vLLM /metrics known here: the hit rate is absent, and says why
        assert sc["prefix_cache"]["hit_rate"] is None and sc["prefix_cache"]["errors"]
    asked = [(float(p["start"]), float(p["end"])) for p in FakePrometheus.asked if "memory_working" in p["query"]]
    assert asked == [pytest.approx(windows["sweep-concurrent-1"], abs=1e-3),  # sent to the millisecond
                     pytest.approx(windows["sweep-concurrent-2"], abs=1e-3)]


def test_without_a_plan_the_load_runs_unobserved():
    from workload.telemetry.collect import TelemetryPlan, run_with_telemetry

    seen = []
    assert run_with_telemetry(lambda obs: seen.append(obs) or {"scenarios": []}, TelemetryPlan()) == {"scenarios": []}
    assert seen == [None]
