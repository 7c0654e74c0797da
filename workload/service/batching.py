"""Micro-batching of the query path's CPU work: questions that arrive while the CPU worker is busy
are embedded together in its next run, one batch instead of one forward pass each.

No timer, no added latency: a lone question starts a batch of one at once; under load, a batch
holds whatever queued while the previous one ran (at most ``max_batch``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


class Batcher:
    def __init__(self, run_batch: Callable[[list[Any]], list[Any]],
                 offload: Callable[..., Awaitable[Any]], max_batch: int = 32) -> None:
        """``run_batch(items)`` returns one result per item (an exception instance is raised to that
        item's caller); it runs through ``offload`` (the CPU worker thread)."""
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
        try:
            while self._pending:
                batch = [(i, f) for i, f in self._pending[:self._max_batch] if not f.done()]
                del self._pending[:self._max_batch]
                if not batch:
                    continue
                try:
                    results = await self._offload(self._run_batch, [i for i, _ in batch])
                except Exception as exc:  # noqa: BLE001 - the whole batch failed
                    results = [exc] * len(batch)
                for (_, future), result in zip(batch, results):
                    if future.done():  # the caller went away
                        continue
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self._draining = False
