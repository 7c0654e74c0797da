"""The query path's micro-batcher: questions queued while the CPU worker is busy share its next
run, and each question goes on as soon as its own result is ready, not when the batch is done."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from workload.service.batching import Batcher

pytestmark = pytest.mark.unit


def batcher(run_batch) -> tuple[Batcher, ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1)

    async def offload(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    return Batcher(run_batch, offload), executor


def test_each_item_goes_on_when_its_own_result_is_ready():
    """Item 0's caller has its result while the worker still searches for the others (each 'search'
    takes 50 ms): it must not wait for the batch's end."""
    batches: list[list[str]] = []

    def run_batch(items, deliver):
        batches.append(list(items))
        for i, item in enumerate(items):
            time.sleep(0.05)
            deliver(i, (item.upper(), time.perf_counter()))

    async def main():
        b, executor = batcher(run_batch)
        async def ask(q):
            result, delivered_at = await b.submit(q)
            return q, result, delivered_at, time.perf_counter()
        try:
            return await asyncio.gather(*(ask(q) for q in ("a", "b", "c", "d")))
        finally:
            executor.shutdown()

    out = asyncio.run(main())
    assert [r for _, r, _, _ in out] == ["A", "B", "C", "D"]
    assert batches == [["a", "b", "c", "d"]]  # submitted together: one run of the worker
    got = {q: received for q, _, _, received in out}
    delivered = {q: at for q, _, at, _ in out}
    assert got["a"] < delivered["d"] - 0.12  # a had its answer ~150 ms before d's search ended
    assert got["b"] < delivered["d"] - 0.07
    for q in "abcd":
        assert 0 <= got[q] - delivered[q] < 0.03  # handed over promptly from the worker thread


def test_questions_that_queue_while_the_worker_is_busy_share_its_next_run():
    batches: list[list[str]] = []

    def run_batch(items, deliver):
        batches.append(list(items))
        time.sleep(0.1)
        for i, item in enumerate(items):
            deliver(i, item)

    async def main():
        b, executor = batcher(run_batch)
        try:
            first = asyncio.ensure_future(b.submit("a"))
            await asyncio.sleep(0.03)  # the worker is busy with "a"
            return await asyncio.gather(first, b.submit("b"), b.submit("c"))
        finally:
            executor.shutdown()

    assert asyncio.run(main()) == ["a", "b", "c"]
    assert batches == [["a"], ["b", "c"]]


def test_a_failed_batch_fails_every_item_it_did_not_answer():
    def run_batch(items, deliver):
        deliver(0, "first")
        raise ValueError("embedder broke")

    async def main():
        b, executor = batcher(run_batch)
        try:
            return await asyncio.gather(b.submit("x"), b.submit("y"), return_exceptions=True)
        finally:
            executor.shutdown()

    first, second = asyncio.run(main())
    assert first == "first"
    assert isinstance(second, ValueError) and "embedder broke" in str(second)


def test_an_item_left_without_a_result_is_an_error_not_a_hang():
    def run_batch(items, deliver):
        deliver(0, ValueError("no such collection"))  # an exception instance is raised to its caller

    async def main():
        b, executor = batcher(run_batch)
        try:
            return await asyncio.wait_for(asyncio.gather(b.submit("x"), b.submit("y"), return_exceptions=True), 5)
        finally:
            executor.shutdown()

    first, second = asyncio.run(main())
    assert isinstance(first, ValueError) and "no such collection" in str(first)
    assert isinstance(second, RuntimeError) and "no result" in str(second)


def test_the_cpu_worker_yields_to_the_event_loop():
    """The replica's CPU worker thread (embedding, search) runs nicer than the event loop that relays
    tokens, so a forward pass on a shared core does not hold a token back."""
    import os
    import threading

    from workload.service.rag import CPU_WORKER_NICE_STEP, RagEngine
    from workload.service.settings import ServiceSettings

    def nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    engine = RagEngine(ServiceSettings(qdrant_path="unused-here"))

    async def main():
        return await engine._cpu(nice)

    try:
        worker = asyncio.run(main())
    finally:
        engine._executor.shutdown()
    assert worker == min(nice() + CPU_WORKER_NICE_STEP, 19) > nice()


def test_closing_the_engine_closes_the_llm_session_and_stops_the_cpu_worker():
    """What the replica's ``__del__`` awaits when Ray Serve stops it: nothing is left open."""
    from workload.service.llm import VllmChatGenerator
    from workload.service.rag import RagEngine
    from workload.service.settings import ServiceSettings

    engine = RagEngine(ServiceSettings(qdrant_path="unused-here"))
    engine.generator = VllmChatGenerator(api_base_url="http://127.0.0.1:9/v1", model="tiny", timeout=5)
    engine._ready = True  # as after warm_up, without loading the embedder

    async def main():
        await engine._cpu(lambda: None)  # the worker thread is started
        session = engine.generator._replica_session()
        await engine.aclose()
        return session

    session = asyncio.run(main())
    assert session.closed and engine.generator._session is None
    with pytest.raises(RuntimeError, match="after shutdown"):
        engine._executor.submit(lambda: None)
