"""Micro-batching of the query path's CPU work: questions that arrive while the CPU worker is busy
are embedded together in its next run, one batch instead of one forward pass each.

No timer, no added latency: a lone question starts a batch of one at once; under load, a batch
holds whatever queued while the previous one ran (at most ``max_batch``). Each question goes on as
soon as its own result is ready (``deliver``), not when the whole batch is done: after a batch's
forward pass, the searches run one by one, and the first question must not wait for the last
one's search (that wait would be neither its retrieval nor anything else a request could name).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

# run_batch(items, deliver): deliver(i, result) hands item i its result (an exception instance is
# raised to that item's caller); it may be called from the worker thread.
RunBatch = Callable[[list[Any], Callable[[int, Any], None]], None]


class Batcher:
    def __init__(self, run_batch: RunBatch, offload: Callable[..., Awaitable[Any]], max_batch: int = 32) -> None:
        """``run_batch`` runs through ``offload`` (the CPU worker thread) and delivers one result
        per item; an item it leaves without one gets the exception it raised, or a RuntimeError."""
        self._run_batch = run_batch
        self._offload = offload
        self._max_batch = max_batch
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self._draining = False

    async def submit(self, item: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._draining:
            self._draining = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = [(i, f) for i, f in self._pending[:self._max_batch] if not f.done()]
                del self._pending[:self._max_batch]
                if not batch:
                    continue
                futures = [f for _, f in batch]

                def deliver(index: int, result: Any, futures=futures) -> None:
                    loop.call_soon_threadsafe(_settle, futures[index], result)

                failure: BaseException | None = None
                try:
                    await self._offload(self._run_batch, [i for i, _ in batch], deliver)
                except Exception as exc:  # noqa: BLE001 - the batch failed: every item left gets it
                    failure = exc
                await asyncio.sleep(0)  # the deliveries scheduled from the worker thread run first
                for future in futures:
                    _settle(future, failure or RuntimeError("the batch delivered no result for this item"))
        finally:
            self._draining = False


def _settle(future: asyncio.Future, result: Any) -> None:
    if future.done():  # delivered already, or the caller went away
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
