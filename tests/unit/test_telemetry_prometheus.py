"""The Prometheus queries' rendering and resolution (the queries themselves run against a real
Prometheus in tests/workload/test_telemetry_live.py)."""

from __future__ import annotations

import pytest

from workload.telemetry.prometheus import MAX_POINTS, QUERIES, PrometheusConfig, step_for

pytestmark = pytest.mark.unit


def test_queries_name_the_namespace_and_cover_gpu_cpu_memory():
    rendered = {q.metric: PrometheusConfig("http://p:9090", namespace="bench").render(q) for q in QUERIES}
    assert set(rendered) == {"gpu_util_percent", "gpu_memory_bytes", "cpu_percent", "memory_bytes"}
    for metric, expr in rendered.items():
        assert 'namespace="bench"' in expr, metric
        assert expr.count("(") == expr.count(")") and "{{" not in expr, metric
    assert "DCGM_FI_DEV_GPU_UTIL" in rendered["gpu_util_percent"]
    assert "DCGM_FI_DEV_FB_USED" in rendered["gpu_memory_bytes"]
    assert "rate(container_cpu_usage_seconds_total" in rendered["cpu_percent"]
    assert '[1m]' in rendered["cpu_percent"]
    assert "container_memory_working_set_bytes" in rendered["memory_bytes"]


def test_step_is_coarsened_to_stay_under_the_point_limit():
    assert step_for(0, 600, 5) == 5
    assert step_for(0, 86_400, 1) == 8  # a day at 1 s would be 86,400 points
    assert 86_400 / step_for(0, 86_400, 1) < MAX_POINTS


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
    assert plan.process_roots == {} and plan.llm_metrics_url is None  # no local stack named
    assert _telemetry_plan(parse(base + ["--prometheus-url", "http://p:9090", "--no-telemetry"])).empty()
    # a state folder without running processes: nothing to sample
    assert _telemetry_plan(parse(base + ["--state-dir", str(tmp_path)])).empty()
