"""Telemetry against real servers: the Prometheus queries against a real Prometheus scraping a real
exporter process, vLLM's /metrics parsed as prometheus_client writes it, the scenario observer
against a real /metrics endpoint, and the local stack's scenarios with process sampling, vLLM's
server histograms and its prefix-cache hit rate."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from workload.local.processes import free_port
from workload.telemetry.histograms import parse_histograms, quantile, server_histograms
from workload.telemetry.prometheus import PrometheusConfig, collect

MiB = 1048576


# ---- vLLM-style histograms through prometheus_client's writer and parser ------------------------

def test_parse_sums_label_sets_and_the_difference_is_the_new_observations():
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    h = Histogram("vllm:time_to_first_token_seconds", "ttft", ["model_name", "engine"],
                  buckets=(0.01, 0.05, 0.1), registry=registry)
    for v in (0.005, 0.02, 0.2):
        h.labels("m", "0").observe(v)
    h.labels("m", "1").observe(0.07)
    before = parse_histograms(generate_latest(registry).decode())
    ttft = before["vllm:time_to_first_token_seconds"]
    assert ttft["count"] == 4 and ttft["sum"] == pytest.approx(0.295)
    assert ttft["buckets"] == [(0.01, 1.0), (0.05, 2.0), (0.1, 3.0), (math.inf, 4.0)]

    for v in (0.03, 0.04):
        h.labels("m", "0").observe(v)
    after = parse_histograms(generate_latest(registry).decode())
    out = server_histograms(before, after)["ttft"]
    assert out["count"] == 2 and out["sum"] == pytest.approx(0.07)
    assert out["buckets"] == [[0.01, 0.0], [0.05, 2.0], [0.1, 2.0], ["+Inf", 2.0]]
    assert out["mean_ms"] == pytest.approx(35.0)
    assert out["p50_ms"] == pytest.approx(30.0)  # rank 1 of 2, halfway through (10, 50] ms


# ---- a real Prometheus scraping a real exporter --------------------------------------------------

# The exporter reads the values to expose from a JSON file at every scrape; the CPU counter grows at
# exactly 0.5 CPU-seconds per second.
EXPORTER = r"""
import json, sys, time
from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, REGISTRY

VALUES, T0 = sys.argv[2], time.time()

class Driven:
    def collect(self):
        v = json.load(open(VALUES))
        labels = ["namespace", "pod", "container", "gpu"]
        util = GaugeMetricFamily("DCGM_FI_DEV_GPU_UTIL", "GPU utilization", labels=labels)
        util.add_metric(["bench", "vllm-0", "vllm", "0"], v["gpu_util"])
        util.add_metric(["other", "x-0", "x", "1"], 100.0)
        yield util
        fb = GaugeMetricFamily("DCGM_FI_DEV_FB_USED", "framebuffer MiB", labels=labels)
        fb.add_metric(["bench", "vllm-0", "vllm", "0"], v["fb_mib"])
        yield fb
        labels = ["namespace", "pod", "container"]
        cpu = CounterMetricFamily("container_cpu_usage_seconds_total", "cpu", labels=labels)
        cpu.add_metric(["bench", "vllm-0", "vllm"], 0.5 * (time.time() - T0))
        cpu.add_metric(["bench", "vllm-0", "POD"], 7.0 * (time.time() - T0))
        yield cpu
        mem = GaugeMetricFamily("container_memory_working_set_bytes", "ws", labels=labels)
        mem.add_metric(["bench", "vllm-0", "vllm"], v["mem"])
        mem.add_metric(["bench", "backend-0", "ray-head"], 3e8)
        yield mem

REGISTRY.register(Driven())
start_http_server(int(sys.argv[1]), addr="127.0.0.1")
print("ready", flush=True)
time.sleep(600)
"""

PROMETHEUS_CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: exporter
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:{port}"]
"""


@contextlib.contextmanager
def running(argv: list[str], log: Path, pipe_stdout: bool = False) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE if pipe_stdout else out, stderr=out)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check, timeout_s: float, what: str) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if check():
                return
        time.sleep(0.25)
    raise AssertionError(f"{what} not within {timeout_s} s")


@contextlib.contextmanager
def prometheus_scraping(target_port: int, tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("the prometheus binary is not installed (Debian/Ubuntu: apt-get install prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(PROMETHEUS_CONFIG.format(port=target_port))
    url = f"http://127.0.0.1:{port}"
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    with running(argv, tmp_path / "prometheus.log"):
        wait_for(lambda: httpx.get(f"{url}/-/ready", timeout=2).status_code == 200, 60, "Prometheus ready")
        yield url


@pytest.mark.integration
def test_prometheus_queries_return_what_the_exporter_exposed(tmp_path):
    values = tmp_path / "values.json"
    values.write_text(json.dumps({"gpu_util": 30.0, "fb_mib": 1000.0, "mem": 5e8}))
    exporter_port = free_port()
    exporter = [sys.executable, "-c", EXPORTER, str(exporter_port), str(values)]
    with running(exporter, tmp_path / "exporter.log", pipe_stdout=True) as exp:
        assert exp.stdout.readline().strip() == b"ready"
        with prometheus_scraping(exporter_port, tmp_path) as url:
            def scraped(n: int) -> bool:
                r = httpx.get(f"{url}/api/v1/query", params={"query": "count_over_time(up[1m])"}, timeout=2)
                result = r.json()["data"]["result"]
                return bool(result) and float(result[0]["value"][1]) >= n

            wait_for(lambda: scraped(6), 60, "six scrapes")
            start = time.time()
            time.sleep(4)
            values.write_text(json.dumps({"gpu_util": 90.0, "fb_mib": 2000.0, "mem": 5e8}))
            time.sleep(4)
            end = time.time()
            time.sleep(1.5)  # the last scrape of the window is in
            # an 8 s window at a 1 s scrape interval: 1 s points, rate() over 2 s from 2 s in
            config = PrometheusConfig(url, namespace="bench", step_s=1, scrape_interval_s=1)
            result = collect(config, start, end)

    assert result["errors"] == []
    assert (result["step_s"], result["rate_window_s"], result["rate_window_exceeds_scenario"]) == (1.0, 2.0, False)
    assert "[2000ms]" in result["queries"]["cpu_percent"]
    rows = {(r["metric"], r["component"]): r for r in result["rows"]}
    util = rows[("gpu_util_percent", "vllm")]
    assert (util["min"], util["max"]) == (30.0, 90.0)  # the other namespace's 100 % is not counted
    assert util["samples"] >= 7 and 30.0 < util["mean"] < 90.0
    assert rows[("gpu_memory_bytes", "vllm")]["max"] == 2000 * MiB
    assert rows[("gpu_memory_bytes", "vllm")]["min"] == 1000 * MiB
    mem = rows[("memory_bytes", "vllm")]
    assert mem["min"] == mem["max"] == 5e8
    assert rows[("memory_bytes", "ray-head")]["mean"] == 3e8
    cpu = rows[("cpu_percent", "vllm")]
    assert cpu["mean"] == pytest.approx(50.0, abs=3.0)  # 0.5 cores; the pause container is left out
    assert {c for m, c in rows if m == "cpu_percent"} == {"vllm"}
    assert result["queries"]["cpu_percent"].count('namespace="bench"') == 1


# ---- the scenario observer against a real /metrics endpoint --------------------------------------

@pytest.mark.integration
def test_observer_gives_each_scenario_only_its_own_observations():
    from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

    from workload.telemetry.collect import ScenarioTelemetry, TelemetryPlan
    from workload.telemetry.processes import ProcessSampler

    registry = CollectorRegistry()
    ttft = Histogram("vllm:time_to_first_token_seconds", "ttft", ["model_name", "engine"],
                     buckets=(0.01, 0.05, 0.1), registry=registry)
    queries = Counter("vllm:prefix_cache_queries", "queried tokens", ["model_name", "engine"], registry=registry)
    hits = Counter("vllm:prefix_cache_hits", "cached tokens", ["model_name", "engine"], registry=registry)
    for engine in ("0", "1"):  # vLLM creates every engine's series at start-up
        queries.labels("m", engine), hits.labels("m", engine)
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        ttft.labels("m", "0").observe(0.5)  # before any scenario (warm-up): in neither window
        queries.labels("m", "0").inc(999)
        plan = TelemetryPlan(llm_metrics_url=f"http://127.0.0.1:{port}/metrics", interval_s=0.1)
        sampler = ProcessSampler({}, interval_s=0.1).start()
        observer = ScenarioTelemetry(plan, sampler)

        observer.measure_started("sweep-concurrent-1")
        t0 = time.time()
        for v in (0.02, 0.03):
            ttft.labels("m", "0").observe(v)
        queries.labels("m", "0").inc(200)
        time.sleep(0.5)
        first = observer.measure_finished("sweep-concurrent-1", t0, time.time())
        ttft.labels("m", "1").observe(0.07)  # between the scenarios (the next one's warm-up)
        observer.measure_started("sweep-concurrent-2")
        t1 = time.time()
        ttft.labels("m", "1").observe(0.08)
        queries.labels("m", "1").inc(300)
        hits.labels("m", "1").inc(240)
        time.sleep(0.5)
        second = observer.measure_finished("sweep-concurrent-2", t1, time.time())
        sampler.stop()
    finally:
        server.shutdown()
        server.server_close()

    h1, h2 = first["server_histograms"], second["server_histograms"]
    assert h1["errors"] == [] and h1["metrics"]["ttft"]["count"] == 2
    assert h1["metrics"]["ttft"]["mean_ms"] == pytest.approx(25.0)
    assert h2["metrics"]["ttft"]["count"] == 1 and h2["metrics"]["ttft"]["mean_ms"] == pytest.approx(80.0)
    assert first["prefix_cache"] == {"queries_tokens": 200, "hits_tokens": 0, "hit_rate": 0.0, "errors": []}
    assert second["prefix_cache"] == {"queries_tokens": 300, "hits_tokens": 240, "hit_rate": 0.8, "errors": []}
    for doc, start in ((first, t0), (second, t1)):
        resources = doc["resources"]
        assert resources["window"]["start_epoch"] == start
        psutil_window = resources["sources"]["psutil"]
        assert 1 <= psutil_window["samples"] <= 10  # ~5 (0.5 s at 0.1 s) and the closing sample
        assert {r["component"] for r in resources["rows"]} == {"client", "host"}
    assert observer.windows["sweep-concurrent-2"][0] == t1


@pytest.mark.integration
def test_observer_records_a_metrics_endpoint_that_does_not_answer():
    from workload.telemetry.collect import ScenarioTelemetry, TelemetryPlan

    observer = ScenarioTelemetry(TelemetryPlan(llm_metrics_url=f"http://127.0.0.1:{free_port()}/metrics"))
    observer.measure_started("concurrent-2")
    out = observer.measure_finished("concurrent-2", time.time() - 1, time.time())
    assert out["server_histograms"]["metrics"] == {}
    assert [e.split(":")[0] for e in out["server_histograms"]["errors"]] == ["before the scenario",
                                                                            "after the scenario"]
    assert out["prefix_cache"]["hit_rate"] is None and len(out["prefix_cache"]["errors"]) == 2
    assert "resources" not in out  # no processes to sample


# ---- the local stack: the North-South step with its telemetry -------------------------------------

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from workload.local.stack import LocalStack

    s = LocalStack(tmp_path_factory.mktemp("stack"), llm_port=free_port(), serve_port=free_port())
    try:
        s.up()
        yield s
    finally:
        s.down()


@pytest.mark.integration
def test_ingest_records_the_corpus_and_pdf_text_is_retrievable(stack, tmp_path):
    from test_ingest_pdf import PDF_PHRASE, pdf_bytes

    from workload.ingest_client import ingest_corpus

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "runbook.pdf").write_bytes(pdf_bytes())
    (corpus / "notes.md").write_text("# Notes\n\n" + "Qdrant keeps one collection per corpus version. " * 30)
    data = ingest_corpus(stack.service_url, corpus, progress=False)
    size = sum(p.stat().st_size for p in corpus.iterdir())
    assert data["corpus"]["documents"] == 2 and data["corpus"]["bytes"] == size == data["bytes"]
    assert data["corpus"]["version"].startswith("custom-") and len(data["corpus"]["sha256"]) == 64
    assert data["chunks"] >= 3
    r = httpx.post(f"{stack.service_url}/query", json={"query": PDF_PHRASE, "k": 1, "max_tokens": 4}, timeout=120)
    assert r.status_code == 200, r.text
    top = r.json()["documents"][0]
    assert top["meta"]["file_name"] == "runbook.pdf" and "dcgm" in top["content"].lower()


def _plan(stack, interval_s: float = 0.25):
    from workload.telemetry.collect import TelemetryPlan

    found = stack.telemetry_roots()
    return TelemetryPlan(process_roots=found["roots"], process_extra=found["extra"], interval_s=interval_s,
                         llm_metrics_url=found["llm_metrics_url"])


@pytest.mark.integration
def test_scenario_windows_on_the_local_stack_see_their_requests_and_the_cache(stack):
    """The observer called around two loads (as the load generator calls it around each scenario's
    measured part): each window's server histograms count exactly its requests, a cold (salted)
    window shows no prefix-cache hits."""
    from workload.bench.northsouth import NorthSouthConfig, run_north_south
    from workload.telemetry.collect import ScenarioTelemetry
    from workload.telemetry.processes import ProcessSampler

    requests, max_tokens = 4, 16
    def config(cache: str) -> NorthSouthConfig:
        return NorthSouthConfig.model_validate({
            "strategy": {"type": "concurrent", "concurrency": 2}, "stop": {"max_requests": requests},
            "warmup_requests": 0, "max_tokens": max_tokens, "cache": cache, "seed": 11, "connect_samples": 0})
    plan = _plan(stack)
    sampler = ProcessSampler(plan.process_roots, extra=plan.process_extra, interval_s=plan.interval_s).start()
    observer = ScenarioTelemetry(plan, sampler)
    out, summaries = {}, {}
    try:
        # a cold pass (every request salted: nothing cached is reused) and a warm one; that a warm cache
        # is really hit is shown by tests/workload/test_cache_live.py
        for name, cache in (("cold", "cold"), ("warm", "warm")):
            observer.measure_started(name)
            start = time.time()
            data = run_north_south(stack.service_url, config(cache), progress=False)
            out[name] = observer.measure_finished(name, start, time.time())
            summaries[name] = data["scenarios"][0]["summary"]
    finally:
        sampler.stop()

    for name, doc in out.items():
        assert summaries[name]["completed"] == requests, name
        hist = doc["server_histograms"]
        assert hist["errors"] == [] and hist["url"] == f"{stack.llm_url}/metrics"
        ttft, itl = hist["metrics"]["ttft"], hist["metrics"]["itl"]
        assert ttft["count"] == requests and itl["count"] == requests * (max_tokens - 1), name
        assert 0 < ttft["p50_ms"] <= ttft["p95_ms"] <= ttft["p99_ms"]
        assert ttft["mean_ms"] < summaries[name]["ttft_ms"]["mean"]  # vLLM's TTFT is part of the client's
        rows = {(r["component"], r["metric"]): r for r in doc["resources"]["rows"]}
        assert rows[("vllm", "memory_bytes")]["min"] > 500 * MiB
        assert rows[("vllm", "cpu_percent")]["max"] > 10, name  # it generated tokens in this window
        assert doc["resources"]["sources"]["psutil"]["samples"] >= 1  # a short window: its boundary sample
        cache = doc["prefix_cache"]
        assert cache["errors"] == [] and cache["queries_tokens"] > 0, name
    cold = out["cold"]["prefix_cache"]
    assert cold["hits_tokens"] == 0 and cold["hit_rate"] == 0.0  # the window saw only salted prompts
    print(json.dumps({"prefix_cache": {name: doc["prefix_cache"] for name, doc in out.items()}}))


@pytest.mark.integration
def test_north_south_step_records_telemetry_per_scenario(stack, tmp_path):
    """The CLI step: a two-level sweep, each scenario with its own resources, server histograms and
    prefix-cache figures over its measured part only (warm-up and the TCP probe left out)."""
    pytest.importorskip("workload.bench.observer", reason="the load generator's scenario observer hook")
    from workload.cli import main

    out = tmp_path / "ns.json"
    warmup, requests, max_tokens = 1, 4, 16
    config = {"strategy": {"type": "sweep", "levels": [1, 2], "slo_attainment_target": 0.01},
              "stop": {"max_requests": requests}, "warmup_requests": warmup, "max_tokens": max_tokens,
              "unique_prompts": True}
    rc = main(["north-south", "--endpoint", stack.service_url, "--config", json.dumps(config),
               "--state-dir", str(stack.state_dir), "--sample-interval", "0.25", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert rc == 0 and doc["ok"], doc.get("error")
    data = doc["data"]
    assert "resources" not in data and "server_histograms" not in data  # no step-wide window any more
    assert len(data["scenarios"]) == 2
    for sc in data["scenarios"]:
        assert sc["summary"]["completed"] == requests
        ttft = sc["server_histograms"]["metrics"]["ttft"]
        assert ttft["count"] == requests  # the measured requests, not the warm-up
        window = sc["resources"]["window"]
        assert window["start_epoch"] >= sc["started_at_epoch"] and window["end_epoch"] > window["start_epoch"]
        assert sc["resources"]["sources"]["psutil"]["roots"]["vllm"] == stack.llm.pid()
        assert sc["prefix_cache"]["queries_tokens"] > 0 and sc["prefix_cache"]["errors"] == []
        buckets = ttft["buckets"]
        assert buckets[-1] == ["+Inf", ttft["count"]]
        assert quantile([(math.inf if le == "+Inf" else le, c) for le, c in buckets], 0.5) * 1000 == ttft["p50_ms"]
