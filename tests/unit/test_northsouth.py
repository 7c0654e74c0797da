"""run_north_south end to end against a small SSE server in a thread: the observer hook around the
measured part of each scenario, the prefix-cache salts a cold run sends, and token counts per event."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from workload.bench.loadgen import ConcurrentStrategy, PoissonStrategy, StopConditions
from workload.bench.northsouth import NorthSouthConfig, SweepStrategy, run_north_south
from workload.bench.sse import format_event

pytestmark = pytest.mark.unit

# Token events of every response: (delay before it in s, tokens it carries).
EVENTS = [(0.02, 2), (0.01, 1), (0.03, 3), (0.01, 1), (0.04, 4)]


def _chunk(payload: bytes) -> bytes:
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


class SSEServer:
    """An HTTP/1.1 SSE server on 127.0.0.1 in its own thread; keeps every request body it got."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = json.loads(await reader.readexactly(length))
                self.bodies.append(body)
                rid = f"req-{len(self.bodies)}"
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                writer.write(_chunk(format_event("meta", {"request_id": rid, "replica_id": "r", "model_id": "m",
                                                          "k": 1})))
                await writer.drain()
                for delay, n in EVENTS:
                    await asyncio.sleep(delay)
                    writer.write(_chunk(format_event("token", {"text": "t" * n, "tokens": n})))
                    await writer.drain()
                total = sum(n for _, n in EVENTS)
                writer.write(_chunk(format_event("done", {"request_id": rid, "token_count": total, "timings": {}}))
                             + b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> SSEServer:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture()
def server() -> Iterator[SSEServer]:
    with SSEServer() as s:
        yield s


@pytest.fixture()
def questions(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "question": f"question {i}?"}) + "\n" for i in range(5)))
    return path


class RecordingObserver:
    """Notes every call with the requests the server had received by then."""

    def __init__(self, server: SSEServer) -> None:
        self.server, self.calls = server, []

    def measure_started(self, scenario: str) -> None:
        self.calls.append(("started", scenario, len(self.server.bodies), time.time()))

    def measure_finished(self, scenario: str, started_at_epoch: float, ended_at_epoch: float) -> dict:
        self.calls.append(("finished", scenario, len(self.server.bodies), started_at_epoch, ended_at_epoch))
        return {"observed": {"scenario": scenario, "window_s": ended_at_epoch - started_at_epoch}}


def config(**kw) -> NorthSouthConfig:
    base = {"strategy": ConcurrentStrategy(concurrency=2), "stop": StopConditions(max_requests=4),
            "warmup_requests": 2, "connect_samples": 2, "k": 1}
    return NorthSouthConfig(**{**base, **kw})


def test_observer_brackets_the_measured_part_of_every_scenario(server, questions):
    observer = RecordingObserver(server)
    cfg = config(strategy=SweepStrategy(levels=[1, 2], stop_after_misses=5))
    out = run_north_south(server.url, cfg, questions, progress=False, observer=observer)
    assert [c[:3] for c in observer.calls] == [
        ("started", "sweep-concurrent-1", 2),  # after the 2 warm-up requests, before any measured one
        ("finished", "sweep-concurrent-1", 6),  # after the 4 measured ones
        ("started", "sweep-concurrent-2", 8),
        ("finished", "sweep-concurrent-2", 12),
    ]
    for i, doc in enumerate(out["scenarios"]):
        started_call, finished_call = observer.calls[2 * i], observer.calls[2 * i + 1]
        assert started_call[3] <= doc["measured_started_at_epoch"] < doc["measured_ended_at_epoch"]
        assert finished_call[3:] == (doc["measured_started_at_epoch"], doc["measured_ended_at_epoch"])
        assert doc["measured_ended_at_epoch"] - doc["measured_started_at_epoch"] == pytest.approx(
            doc["summary"]["wall_time_s"])
        assert doc["observed"] == {"scenario": doc["scenario"], "window_s": pytest.approx(doc["summary"]["wall_time_s"])}


def test_a_cold_run_salts_every_request_and_never_repeats_a_salt(server, questions):
    cfg = config(strategy=SweepStrategy(levels=[1, 2], stop_after_misses=5))
    first = run_north_south(server.url, cfg, questions, progress=False)
    second = run_north_south(server.url, cfg, questions, progress=False)  # same seed, same config
    salts = [b.get("cache_salt") for b in server.bodies]
    assert len(salts) == 24 and None not in salts  # 2 runs x 2 levels x (2 warm-up + 4 measured)
    assert len(set(salts)) == 24
    records = [r for run in (first, second) for s in run["scenarios"] for r in s["records"]]
    assert sorted(r["cache_salt"] for r in records) == sorted(salts)
    assert first["config"]["cache"] == "cold" and first["scenarios"][0]["summary"]["cache"] == "cold"
    # the questions go on from one level to the next instead of starting over
    level1 = [r["prompt_id"] for r in first["scenarios"][0]["records"]]
    level2 = [r["prompt_id"] for r in first["scenarios"][1]["records"]]
    assert level1[:2] != level2[:2]


def test_a_warm_run_sends_no_salt_and_repeats_its_questions(server, questions):
    out = run_north_south(server.url, config(cache="warm", strategy=SweepStrategy(levels=[1, 2], stop_after_misses=5)),
                          questions, progress=False)
    assert [b.get("cache_salt") for b in server.bodies] == [None] * 12
    level1 = [r["prompt_id"] for r in out["scenarios"][0]["records"]]
    level2 = [r["prompt_id"] for r in out["scenarios"][1]["records"]]
    assert level1 == level2


def test_token_counts_per_event_reach_the_records_and_the_summary(server, questions):
    out = run_north_south(server.url, config(), questions, progress=False)
    scenario = out["scenarios"][0]
    measured = [r for r in scenario["records"] if not r["warmup"]]
    assert all(r["token_counts"] == [n for _, n in EVENTS] for r in measured)
    summary = scenario["summary"]
    assert summary["tokens_per_event"]["count"] == 4 * len(EVENTS)
    assert summary["tokens_per_event"]["mean"] == pytest.approx(11 / 5)
    assert (summary["tokens_per_event"]["min"], summary["tokens_per_event"]["max"]) == (1, 4)
    assert summary["itl_ms"]["count"] == 4 * 9  # one per token after the first event's 2


def test_open_loop_scenario_gets_a_validity_section(server, questions):
    out = run_north_south(server.url, config(strategy=PoissonStrategy(rate_rps=20, seed=1)), questions,
                          progress=False)
    summary = out["scenarios"][0]["summary"]
    assert summary["validity"]["mode"] == "open_loop"
    assert summary["validity"]["requests"] == 4
    assert set(summary["validity"]) >= {"schedule_lag_p50_ms", "schedule_lag_p99_ms", "mean_scheduled_gap_ms",
                                        "schedule_lag_p99_share_of_gap", "send_rate_ratio", "valid"}
    assert summary["valid"] is summary["validity"]["valid"]
    assert out["scenarios"][0]["operating_point"] is None and out["scenarios"][0]["headline"] is True
