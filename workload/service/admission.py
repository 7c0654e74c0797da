"""Backpressure: a bounded number of queries in flight per replica; beyond it, a fast 503.

A query holds a slot from admission until its response has been sent or abandoned. The slot is
released exactly once, by whichever comes first: the end of the event stream, or the end of the
response (``AdmittedStream``), which also covers a client that left before the stream started.
"""

from __future__ import annotations

from starlette.responses import StreamingResponse

from workload.service import telemetry


class Slot:
    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._admission._release()


class Admission:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.inflight = 0

    def try_acquire(self) -> Slot | None:
        """A slot, or None when ``limit`` queries are in flight already (counted as rejected)."""
        if self.inflight >= self.limit:
            telemetry.REJECTED.inc()
            return None
        self.inflight += 1
        telemetry.INFLIGHT.set(self.inflight)
        return Slot(self)

    def _release(self) -> None:
        self.inflight -= 1
        telemetry.INFLIGHT.set(self.inflight)


class AdmittedStream(StreamingResponse):
    """A streaming response that gives its slot back when it is done, however it ends, and closes
    its event generator at once: a client that left must stop its generation in the LLM now, not
    whenever the garbage collector finalises the generator."""

    def __init__(self, content, slot: Slot, **kwargs) -> None:
        super().__init__(content, **kwargs)
        self.slot = slot

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self.body_iterator.aclose()
            finally:
                self.slot.release()
