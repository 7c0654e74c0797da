"""Worker processes and client-pod shards against the stand-in SSE server, whose answers are known:
first token TTFT_MS after the request, then TOKENS - 1 more ITL_MS apart. The merged scenario
must hold exactly the requests one process would send, on one clock, judged as one run."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from workload.bench.merge import MergeError, merge_shard_documents
from workload.bench.metrics import SLO, summarize
from workload.bench.northsouth import NorthSouthConfig, run_north_south
from workload.bench.records import RequestRecord
from workload.bench.shards import arrival_schedule
from workload.bench.strategies import PoissonStrategy, StopConditions

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TTFT_MS, ITL_MS, TOKENS = 50.0, 5.0, 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def standin() -> str:
    port = _free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "standin_sse_server.py"), "--port",
                               str(port), "--tokens", str(TOKENS), "--itl-ms", str(ITL_MS), "--ttft-ms", str(TTFT_MS)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the stand-in SSE server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def config(strategy: dict, requests: int, **kw) -> NorthSouthConfig:
    return NorthSouthConfig.model_validate({"strategy": strategy, "stop": {"max_requests": requests},
                                            "warmup_requests": 3, "connect_samples": 3, "max_tokens": TOKENS,
                                            "k": 1, **kw})


def measured(scenario: dict) -> list[RequestRecord]:
    return [RequestRecord.from_dict(r) for r in scenario["records"] if not r["warmup"]]


def assert_known_truth(summary: dict) -> None:
    """TTFT and ITL as the stand-in serves them (the client adds well under a few ms on loopback)."""
    assert TTFT_MS <= summary["ttft_ms"]["p50"] < TTFT_MS + 15
    assert ITL_MS * 0.8 < summary["itl_ms"]["p50"] < ITL_MS + 3
    assert summary["errored"] == 0 and summary["output_tokens"] == summary["requests"] * TOKENS


def test_two_workers_send_the_whole_open_loop_schedule_on_one_clock(standin):
    cfg = config({"type": "poisson", "rate_rps": 40, "seed": 5}, 60, workers=2)
    scenario = run_north_south(standin, cfg, progress=False)["scenarios"][0]
    s = scenario["summary"]
    records = measured(scenario)
    assert s["requests"] == 60 and sorted(r.index for r in records) == list(range(3, 63))
    assert_known_truth(s)
    # Every request was due exactly when the one-process schedule said, on the shared clock.
    due, _ = arrival_schedule(PoissonStrategy(rate_rps=40, seed=5), StopConditions(max_requests=60))
    assert [r.t_scheduled for r in sorted(records, key=lambda r: r.index)] == due
    assert s["validity"]["mode"] == "open_loop" and s["validity"]["requests"] == 60 and s["valid"]
    assert s["validity"]["schedule_lag_p99_ms"] < 10
    workers = s["workers"]
    assert workers["count"] == 2 and workers["failed"] is None
    assert [(w["shard_index"], w["shard_count"], w["requests"], w["events"]) for w in workers["per_worker"]] == \
        [(0, 2, 30, 300), (1, 2, 30, 300)]
    assert all(w["cpu_s"] > 0 for w in workers["per_worker"])
    salts = [r["cache_salt"] for r in scenario["records"]]
    assert len(set(salts)) == 63 and all(salt.endswith(f".{r['index']}") for salt, r in zip(salts, scenario["records"]))
    assert all(r["t_sent"] < 0 for r in scenario["records"] if r["warmup"])  # warm-up: before t0
    assert scenario["measured_ended_at_epoch"] - scenario["measured_started_at_epoch"] == \
        pytest.approx(s["wall_time_s"])


def test_two_workers_keep_the_total_concurrency_in_flight(standin):
    cfg = config({"type": "concurrent", "concurrency": 5}, 80, workers=2)
    scenario = run_north_south(standin, cfg, progress=False)["scenarios"][0]
    s = scenario["summary"]
    assert s["requests"] == 80 and sorted(r.index for r in measured(scenario)) == list(range(3, 83))
    assert_known_truth(s)
    v = s["validity"]
    assert v["mode"] == "closed_loop" and v["concurrency"] == 5 and s["valid"]
    assert v["mean_in_flight"] > 4.5  # the merged run kept 5 in flight, not one worker's 3 or 2
    assert [w["requests"] for w in s["workers"]["per_worker"]] == [48, 32]  # 3 and 2 of the 5 slots


def test_a_sweep_gives_each_level_at_most_one_worker_per_slot(standin):
    cfg = config({"type": "sweep", "levels": [1, 3], "stop_after_misses": 5}, 12, workers=2)
    out = run_north_south(standin, cfg, progress=False)
    assert [s["summary"]["workers"]["count"] for s in out["scenarios"]] == [1, 2]
    for scenario in out["scenarios"]:
        assert scenario["summary"]["requests"] == 12 and scenario["summary"]["valid"]
        assert_known_truth(scenario["summary"])


def _kill_a_worker_after(delay_s: float, killed: list) -> None:
    me = psutil.Process()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = [p for p in me.children() if "spawn_main" in " ".join(p.cmdline())]
        if len(workers) == 2:
            time.sleep(delay_s)
            os.kill(workers[1].pid, signal.SIGKILL)
            killed.append(workers[1].pid)
            return
        time.sleep(0.05)


def test_a_worker_killed_mid_run_fails_the_scenario(standin):
    # 2 x 150 requests of about 100 ms each on one slot per worker: about 15 s if nothing happened.
    cfg = config({"type": "concurrent", "concurrency": 2}, 300, workers=2)
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_worker_after, args=(4.0, killed))
    killer.start()
    t0 = time.monotonic()
    scenario = run_north_south(standin, cfg, progress=False)["scenarios"][0]
    elapsed = time.monotonic() - t0
    killer.join()
    assert killed
    s = scenario["summary"]
    assert s["valid"] is False
    assert re.fullmatch(r"worker [01] of 2 exited with code -9 before finishing its shard", s["invalid_reason"])
    # The other worker is stopped at once: neither returned records, and nothing smaller is reported.
    assert [w["finished"] for w in s["workers"]["per_worker"]] == [False, False]
    assert s["workers"]["failed"] == s["invalid_reason"]
    assert elapsed < 12  # the other worker was stopped, not waited for
    assert not [p for p in psutil.Process().children() if "spawn_main" in " ".join(p.cmdline())]


# --- client-pod shards: the CLI's --shard I/N --start-at EPOCH, merged -----------------------------

def run_shards(url: str, cfg: dict, count: int, tmp: Path, start_in_s: float = 8.0,
               workers: dict[int, int] | None = None) -> list[dict]:
    start = time.time() + start_in_s
    procs = []
    for i in range(count):
        argv = [sys.executable, "-m", "workload.cli", "north-south", "--endpoint", url, "--config", json.dumps(cfg),
                "--no-telemetry", "--shard", f"{i}/{count}", "--start-at", repr(start), "--out", str(tmp / f"{i}.json")]
        if workers and i in workers:
            argv += ["--workers", str(workers[i])]
        procs.append(subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.DEVNULL))
    for p in procs:
        p.wait(120)
    return [json.loads((tmp / f"{i}.json").read_text()) for i in range(count)]


OPEN = {"strategy": {"type": "poisson", "rate_rps": 40, "seed": 2}, "stop": {"max_requests": 60},
        "warmup_requests": 3, "connect_samples": 3, "max_tokens": TOKENS, "k": 1}


@pytest.fixture(scope="module")
def open_shards(standin, tmp_path_factory) -> list[dict]:
    return run_shards(standin, OPEN, 3, tmp_path_factory.mktemp("shards"))


def test_pod_shards_merge_into_the_one_process_run(open_shards):
    for i, doc in enumerate(open_shards):
        assert doc["ok"], doc["error"]
        shard = doc["data"]["shard"]
        assert (shard["index"], shard["count"]) == (i, 3) and shard["late_by_s"] == 0.0
        assert shard["t0_epoch"] == shard["start_at_epoch"]
        assert doc["data"]["scenarios"][0]["summary"]["requests"] == 20
    out = merge_shard_documents(open_shards)
    scenario = out["scenarios"][0]
    s = scenario["summary"]
    records = sorted(measured(scenario), key=lambda r: r.index)
    assert [r.index for r in records] == list(range(3, 63))
    due, _ = arrival_schedule(PoissonStrategy(rate_rps=40, seed=2), StopConditions(max_requests=60))
    assert [r.t_scheduled for r in records] == due
    assert_known_truth(s)
    assert s["validity"]["mode"] == "open_loop" and s["validity"]["requests"] == 60 and s["valid"], s["validity"]
    # The gate and every figure are those of the merged records, as one process's would be.
    again = summarize([RequestRecord.from_dict(r) for r in scenario["records"]], s["wall_time_s"],
                      SLO(**OPEN and NorthSouthConfig.model_validate(OPEN).slo), 40.0,
                      connect_samples_ms=s["tcp_connect"]["before_load_samples_ms"]).model_dump(mode="json")
    for key in ("requests", "ttft_ms", "itl_ms", "validity", "slo_attainment", "output_tokens_per_s"):
        assert s[key] == again[key]
    assert len(s["tcp_connect"]["before_load_samples_ms"]) == 9  # every shard's probe
    assert [(r["index"], r["requests"]) for r in out["shards"]] == [(0, 20), (1, 20), (2, 20)]
    assert s["workers"]["count"] == 3 and scenario["headline"] and scenario["operating_point"] is None
    assert set(out) >= {"endpoint", "config", "scenarios", "shards"} and "shard" not in out


def test_a_shard_that_started_late_is_shifted_onto_the_common_clock(open_shards):
    docs = copy.deepcopy(open_shards)
    docs[1]["data"]["shard"]["t0_epoch"] += 0.5
    docs[1]["data"]["shard"]["late_by_s"] = 0.5
    shard1 = {r["index"]: r["t_sent"] for r in docs[1]["data"]["scenarios"][0]["records"]}
    scenario = merge_shard_documents(docs)["scenarios"][0]
    for r in scenario["records"]:
        if r["index"] in shard1:
            assert r["t_sent"] == pytest.approx(shard1[r["index"]] + 0.5)
    late = [w["late_by_s"] for w in scenario["summary"]["workers"]["per_worker"]]
    assert late == [0.0, 0.5, 0.0]


def test_shards_that_do_not_make_one_schedule_are_refused(open_shards):
    docs = open_shards
    with pytest.raises(MergeError, match=r"missing \[1\]"):
        merge_shard_documents([docs[0], docs[2]])
    with pytest.raises(MergeError, match=r"missing \[2\], more than once \[0\]"):
        merge_shard_documents([docs[0], docs[1], docs[0]])
    other = copy.deepcopy(docs[2])
    other["data"]["config"]["stop"]["max_requests"] = 61
    with pytest.raises(MergeError, match="different configs"):
        merge_shard_documents([docs[0], docs[1], other])
    plain = copy.deepcopy(docs[0])
    del plain["data"]["shard"]
    with pytest.raises(MergeError, match="not a shard"):
        merge_shard_documents([plain, docs[1], docs[2]])
    with pytest.raises(MergeError, match="a shard failed: boom"):
        merge_shard_documents([{"ok": False, "error": "boom", "data": {}}, docs[1], docs[2]])


def test_closed_loop_pods_with_their_own_workers_merge_exactly(standin, tmp_path):
    cfg = {**OPEN, "strategy": {"type": "concurrent", "concurrency": 5}, "stop": {"max_requests": 50}}
    docs = run_shards(standin, cfg, 2, tmp_path, workers={0: 2})  # shard 0 (3 slots) runs 2 processes
    assert all(d["ok"] for d in docs), [d["error"] for d in docs]
    out = merge_shard_documents(docs)
    s = out["scenarios"][0]["summary"]
    assert sorted(r.index for r in measured(out["scenarios"][0])) == list(range(3, 53))
    assert_known_truth(s)
    assert s["validity"]["concurrency"] == 5 and s["valid"]
    assert [(w["shard_index"], w["shard_count"]) for w in s["workers"]["per_worker"]] == [(0, 4), (2, 4), (1, 2)]


def test_a_shard_ready_after_the_agreed_start_fails_clearly(standin, tmp_path):
    docs = run_shards(standin, OPEN, 2, tmp_path, start_in_s=-10)
    for i, doc in enumerate(docs):
        assert doc["ok"] is False
        assert re.match(rf"shard {i}/2 ready 1\d\.\d s after the agreed start", doc["error"])


def test_a_sweep_cannot_run_as_shards(standin, tmp_path):
    cfg = {**OPEN, "strategy": {"type": "sweep", "levels": [1, 2]}}
    doc = run_shards(standin, cfg, 1, tmp_path)[0]
    assert doc["ok"] is False and "a sweep cannot run as shards" in doc["error"]
