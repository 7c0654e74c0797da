"""The process sampler against real processes: grouping, CPU and memory figures, bounds."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from workload.telemetry.processes import ProcessSampler, classify
from workload.telemetry.stats import RunningStats, usage_row

pytestmark = pytest.mark.unit

MB = 1024 * 1024
# A parent that starts two children: one burning CPU, one holding 80 MB; named by their argv.
TREE = r"""
import subprocess, sys, time
burn = "import time\nt = time.time()\nwhile time.time() - t < 60: pass"
hold = "import time\nb = bytearray(80 * 1024 * 1024)\nfor i in range(0, len(b), 4096): b[i] = 1\ntime.sleep(60)"
kids = [subprocess.Popen([sys.executable, "-c", burn, "ray::ServeReplica:ragbench:RagDeployment"]),
        subprocess.Popen([sys.executable, "-c", hold, "raylet"])]
print("started", flush=True)
time.sleep(60)
"""


@pytest.fixture
def tree():
    proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout.readline().strip() == "started"
    root = psutil.Process(proc.pid)
    deadline = time.time() + 10
    while len(root.children()) < 2 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the 80 MB are touched
    yield proc
    for p in [root, *root.children(recursive=True)]:
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait()


@pytest.mark.parametrize("root,is_root,name,cmdline,group", [
    ("vllm", True, "python", "python -m vllm.entrypoints.openai.api_server", "vllm"),
    ("vllm", False, "VLLM::EngineCor", "VLLM::EngineCore", "vllm"),
    ("rag-service", True, "python", "python -m workload.local.serve_local", "service-driver"),
    ("rag-service", False, "gcs_server", "/x/ray/core/src/ray/gcs/gcs_server --port", "ray-gcs"),
    ("rag-service", False, "raylet", "/x/ray/core/src/ray/raylet/raylet --node", "raylet"),
    ("rag-service", False, "ray::ServeRepli", "ray::ServeReplica:ragbench:RagDeployment", "serve-replica"),
    ("rag-service", False, "ray::ProxyActor", "ray::ProxyActor", "serve-proxy"),
    ("rag-service", False, "ray::ServeContr", "ray::ServeController", "serve-controller"),
    ("rag-service", False, "ray::IDLE", "ray::IDLE", "ray-workers"),
    ("rag-service", False, "python", "python -u /x/ray/_private/log_monitor.py", "ray-other"),
])
def test_classify(root, is_root, name, cmdline, group):
    assert classify(root, is_root, name, cmdline) == group


def test_running_stats_and_rows():
    stats = RunningStats()
    for v in (3.0, 1.0, float("nan"), 2.0):
        stats.add(v)
    assert (stats.count, stats.minimum, stats.maximum, stats.mean) == (3, 1.0, 3.0, 2.0)
    row = usage_row("psutil", "vllm", "cpu_percent", "percent", stats)
    assert row == {"source": "psutil", "component": "vllm", "metric": "cpu_percent", "unit": "percent",
                   "min": 1.0, "mean": 2.0, "max": 3.0, "samples": 3}
    assert usage_row("p", "c", "m", "u", RunningStats())["min"] is None


def test_sampler_groups_a_real_process_tree(tree):
    sampler = ProcessSampler({"rag-service": tree.pid}, interval_s=0.2).start()
    time.sleep(2.5)
    result = sampler.stop()
    rows = {(r["component"], r["metric"]): r for r in result["rows"]}
    assert result["samples"] >= 5 and result["source"] == "psutil"
    # the busy child is the replica: it used CPU (on a shared machine, well under 100 %)
    assert rows[("serve-replica", "cpu_percent")]["max"] > 20
    assert rows[("serve-replica", "processes")]["mean"] == 1
    # the other child holds 80 MB resident
    assert rows[("raylet", "memory_bytes")]["min"] > 80 * MB
    assert rows[("service-driver", "cpu_percent")]["mean"] < rows[("serve-replica", "cpu_percent")]["mean"]
    # total is the sum of the stack's groups; client (this process) and host are apart from it
    assert rows[("total", "processes")]["max"] == 3
    assert rows[("total", "memory_bytes")]["min"] >= rows[("raylet", "memory_bytes")]["min"]
    assert ("client", "cpu_percent") in rows and ("host", "memory_bytes") in rows
    host_cpu = rows[("host", "cpu_percent")]
    assert host_cpu["max"] <= 100 * psutil.cpu_count() * 1.05  # all cores, in one-core units
    assert host_cpu["min"] >= rows[("serve-replica", "cpu_percent")]["min"] * 0.5  # the busy child is on it
    kids = {c.pid for c in psutil.Process(tree.pid).children()}
    assert set(result["pids"]["serve-replica"]) | set(result["pids"]["raylet"]) == kids
    assert {r["samples"] for r in result["rows"]} == {result["samples"]}  # every group in every sample


def test_sampler_is_bounded_and_survives_processes_ending(tree):
    sampler = ProcessSampler({"vllm": tree.pid}, interval_s=0.05, max_samples=4).start()
    time.sleep(0.3)
    for p in psutil.Process(tree.pid).children():
        p.kill()
    time.sleep(0.5)
    result = sampler.stop()
    assert result["samples"] == 4 and result["truncated"] is True
    assert result["errors"] == []


def test_sampler_of_a_process_that_is_gone_reports_no_stack_rows():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    sampler = ProcessSampler({"vllm": proc.pid}, interval_s=0.05, include_host=False).start()
    time.sleep(0.2)
    components = {r["component"] for r in sampler.stop()["rows"]}
    assert components == {"client"}


def test_interval_must_be_positive():
    with pytest.raises(ValueError):
        ProcessSampler({}, interval_s=0)


def test_a_window_counts_only_the_samples_between_open_and_close(tree):
    sampler = ProcessSampler({"rag-service": tree.pid}, interval_s=0.2).start()
    time.sleep(1.0)  # samples before the scenario: not in its window
    opened = time.time()
    sampler.open_window("sweep-concurrent-1")
    time.sleep(1.0)
    window = sampler.close_window("sweep-concurrent-1")
    closed = time.time()
    time.sleep(0.6)
    total = sampler.stop()
    # ~5 samples in the window (1 s at 0.2 s) plus the closing one; the run has more on both sides
    assert 2 <= window["samples"] <= 8
    assert total["samples"] >= window["samples"] + 3
    assert opened <= window["window"]["start_epoch"] <= window["window"]["end_epoch"] <= closed
    rows = {(r["component"], r["metric"]): r for r in window["rows"]}
    # the busy child used CPU in the window (how much depends on what else the machine runs)
    assert rows[("serve-replica", "cpu_percent")]["mean"] > rows[("service-driver", "cpu_percent")]["mean"]
    assert rows[("raylet", "memory_bytes")]["min"] > 80 * MB
    assert {r["samples"] for r in window["rows"]} == {window["samples"]}
    assert window["errors"] == []


def test_windows_may_overlap_and_a_window_of_a_stopped_sampler_is_empty(tree):
    sampler = ProcessSampler({"vllm": tree.pid}, interval_s=0.1, include_host=False).start()
    sampler.open_window("a")
    time.sleep(0.5)
    sampler.open_window("b")
    time.sleep(0.5)
    b = sampler.close_window("b")
    a = sampler.close_window("a")
    assert a["samples"] > b["samples"] >= 1  # a counts b's opening sample too; b its closing one
    sampler.stop()
    sampler.open_window("late")
    late = sampler.close_window("late")
    assert late["samples"] == 0 and late["rows"] == []
