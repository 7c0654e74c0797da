"""Telemetry against real servers: the Prometheus queries against a real Prometheus scraping a real
exporter process, vLLM's /metrics parsed as prometheus_client writes it, and the whole North-South
step on the local stack with process sampling and vLLM's server histograms."""

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

            wait_for(lambda: scraped(6), 60, "six scrapes")  # rate() below looks 5 s back
            start = time.time()
            time.sleep(4)
            values.write_text(json.dumps({"gpu_util": 90.0, "fb_mib": 2000.0, "mem": 5e8}))
            time.sleep(4)
            end = time.time()
            time.sleep(1.5)  # the last scrape of the window is in
            # rate() over 5 s: the series is seconds old (the default 1m needs a minute of history)
            config = PrometheusConfig(url, namespace="bench", step_s=1, rate_window="5s")
            result = collect(config, start, end)

    assert result["errors"] == []
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


@pytest.mark.integration
def test_north_south_step_records_resources_and_server_histograms(stack, tmp_path):
    from workload.cli import main

    out = tmp_path / "ns.json"
    warmup, requests, max_tokens = 1, 4, 16
    config = {"strategy": {"type": "concurrent", "concurrency": 2}, "stop": {"max_requests": requests},
              "warmup_requests": warmup, "max_tokens": max_tokens}
    rc = main(["north-south", "--endpoint", stack.service_url, "--config", json.dumps(config),
               "--state-dir", str(stack.state_dir), "--sample-interval", "0.25", "--out", str(out)])
    doc = json.loads(out.read_text())
    assert rc == 0 and doc["ok"], doc.get("error")
    data = doc["data"]
    summary = data["scenarios"][0]["summary"]
    assert summary["completed"] == requests

    resources = data["resources"]
    psutil_meta = resources["sources"]["psutil"]
    assert psutil_meta["samples"] >= 2 and psutil_meta["errors"] == []
    rows = {(r["component"], r["metric"]): r for r in resources["rows"]}
    assert rows[("vllm", "memory_bytes")]["min"] > 500 * MiB  # the engine, the model and its KV cache
    assert rows[("vllm", "cpu_percent")]["max"] > 10  # it generated 5 x 16 tokens meanwhile
    for group in ("service-driver", "ray-gcs", "raylet", "serve-replica", "serve-proxy"):
        assert rows[(group, "memory_bytes")]["min"] > 10 * MiB, group
    assert rows[("total", "memory_bytes")]["min"] > rows[("vllm", "memory_bytes")]["min"]
    assert psutil_meta["roots"]["vllm"] == stack.llm.pid()

    hist = data["server_histograms"]
    assert hist["errors"] == [] and hist["url"] == f"{stack.llm_url}/metrics"
    ttft, itl = hist["metrics"]["ttft"], hist["metrics"]["itl"]
    # exactly the step's requests (warm-up included), nothing from before it
    assert ttft["count"] == warmup + requests
    assert itl["count"] == (warmup + requests) * (max_tokens - 1)
    assert 0 < ttft["p50_ms"] <= ttft["p95_ms"] <= ttft["p99_ms"]
    # vLLM's TTFT is part of the client's (which adds retrieval, the service and the network)
    assert ttft["mean_ms"] < summary["ttft_ms"]["mean"]
    buckets = ttft["buckets"]
    assert buckets[-1] == ["+Inf", ttft["count"]]
    assert quantile([(math.inf if le == "+Inf" else le, c) for le, c in buckets], 0.5) * 1000 == ttft["p50_ms"]
    print(json.dumps({"resources": resources["rows"], "ttft": {k: ttft[k] for k in ("mean_ms", "p50_ms", "p95_ms")},
                      "itl": {k: itl[k] for k in ("mean_ms", "p50_ms", "p95_ms")},
                      "client_ttft": summary["ttft_ms"], "client_itl": summary["itl_ms"]}))
