"""A stand-in for vLLM's streaming chat completions: vLLM's step clock, known timing, little CPU.

For benchmarks of what sits in front of the LLM (``rag_overhead.py --llm standin``), where the
LLM's own time must be known and the LLM must leave the CPU to what is measured:

- **One engine step every ``--step-ms``**, on one clock for all streams, as a continuously batching
  server runs: at each step every running stream gets its next token, at the same instant. A
  request (its body read) joins at the first step at least ``--prefill-ms`` after it arrived, so
  the streams that start together end together, and a closed loop's requests come back in waves
  as they do from vLLM.
- **Its own figures, under vLLM's names**, at ``GET /metrics``: ``vllm:time_to_first_token_seconds``
  (arrival to first token) and ``vllm:request_time_per_output_token_seconds`` (first to last
  token over the tokens between), as a histogram's ``_sum`` and ``_count`` per finished stream.
- ``POST /v1/chat/completions`` streams ``max_tokens`` tokens (``ignore_eos`` in effect) as OpenAI
  chat chunks with continuous usage, then ``data: [DONE]``; any other ``GET`` (``/health``,
  ``/v1/models``) answers 200. HTTP/1.1, kept-alive, chunked. Every chunk's bytes are built once.

    python benchmarks/standin_llm.py --port 18901 --step-ms 12 --prefill-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field

from standin_sse_server import http_chunk  # this script's folder is on the path

MODEL = "standin"
TTFT, TPOT = "vllm:time_to_first_token_seconds", "vllm:request_time_per_output_token_seconds"
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def _plain(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n\r\n"
            .encode() + body)


class Chunks:
    """The bytes of token number ``i`` (1-based) of a stream, made once per number."""

    def __init__(self) -> None:
        self._made: dict[tuple[int, bool], bytes] = {}
        self.done = http_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"

    def token(self, i: int, last: bool) -> bytes:
        key = (i, last)
        if key not in self._made:
            data = {"id": MODEL, "object": "chat.completion.chunk", "model": MODEL,
                    "choices": [{"index": 0, "delta": {"content": " tok"},
                                 "finish_reason": "length" if last else None}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": i, "total_tokens": i + 1}}
            self._made[key] = http_chunk(b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n")
        return self._made[key]


@dataclass
class Stream:
    transport: asyncio.Transport
    tokens: int
    arrived: float
    ready_at: float
    finished: asyncio.Future
    sent: int = 0
    first_at: float = 0.0


@dataclass
class Engine:
    """Streams in flight and the step clock that feeds them; the figures of finished streams."""

    step_s: float
    prefill_s: float
    chunks: Chunks = field(default_factory=Chunks)
    waiting: list[Stream] = field(default_factory=list)
    running: list[Stream] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=lambda: {TTFT: 0.0, TPOT: 0.0})
    counts: dict[str, int] = field(default_factory=lambda: {TTFT: 0, TPOT: 0})

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        steps = 0

        def step() -> None:
            nonlocal steps
            now = time.monotonic()
            joining = [s for s in self.waiting if s.ready_at <= now]
            if joining:
                self.waiting = [s for s in self.waiting if s.ready_at > now]
                self.running += joining
            if self.running:
                self.running = [s for s in self.running if self._next_token(s, now)]
            steps += 1
            loop.call_at(t0 + steps * self.step_s, step)  # on the clock, not after the work

        loop.call_at(t0 + self.step_s, step)

    def _next_token(self, s: Stream, now: float) -> bool:
        """Write the stream's next token; False once it has ended (or its client went away)."""
        if s.transport.is_closing():
            s.finished.done() or s.finished.set_result(None)
            return False
        s.sent += 1
        last = s.sent == s.tokens
        if s.sent == 1:
            s.first_at = now
            self._observe(TTFT, now - s.arrived)
        s.transport.write(self.chunks.token(s.sent, last) + (self.chunks.done if last else b""))
        if last:
            if s.tokens > 1:
                self._observe(TPOT, (now - s.first_at) / (s.tokens - 1))
            s.finished.done() or s.finished.set_result(None)
        return not last

    def _observe(self, name: str, seconds: float) -> None:
        self.sums[name] += seconds
        self.counts[name] += 1

    def admit(self, transport: asyncio.Transport, tokens: int, arrived: float) -> asyncio.Future:
        finished = asyncio.get_running_loop().create_future()
        transport.write(HEAD)
        self.waiting.append(Stream(transport, tokens, arrived, arrived + self.prefill_s, finished))
        return finished

    def metrics(self) -> bytes:
        lines = []
        for name in (TTFT, TPOT):
            lines += [f"# TYPE {name} histogram",
                      f'{name}_bucket{{model_name="{MODEL}",le="+Inf"}} {self.counts[name]}',
                      f'{name}_sum{{model_name="{MODEL}"}} {self.sums[name]!r}',
                      f'{name}_count{{model_name="{MODEL}"}} {self.counts[name]}']
        return ("\n".join(lines) + "\n").encode()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, engine: Engine) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *headers = head.split(b"\r\n")
            method, path = request_line.split(b" ")[:2]
            length = 0
            for line in headers:
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            arrived = time.monotonic()
            if method == b"POST" and path == b"/v1/chat/completions":
                try:
                    tokens = int(json.loads(body).get("max_tokens") or 16)
                except (ValueError, AttributeError):
                    writer.write(_plain("400 Bad Request", b'{"error":{"message":"bad body","code":400}}'))
                    continue
                await engine.admit(writer.transport, max(tokens, 1), arrived)
            elif method == b"GET" and path == b"/metrics":
                writer.write(_plain("200 OK", engine.metrics(), "text/plain; version=0.0.4"))
            elif method == b"GET":
                writer.write(_plain("200 OK", b'{"object":"list","data":[{"id":"%s"}]}' % MODEL.encode()))
            else:
                writer.write(_plain("404 Not Found", b'{"error":{"message":"not found","code":404}}'))
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int, step_ms: float, prefill_ms: float) -> None:
    engine = Engine(step_ms / 1000, prefill_ms / 1000)
    server = await asyncio.start_server(lambda r, w: handle(r, w, engine), "127.0.0.1", port, backlog=1024)
    engine.start()
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--step-ms", type=float, default=12.0, help="one token per stream per step")
    parser.add_argument("--prefill-ms", type=float, default=20.0,
                        help="the least time from a request's arrival to its first token")
    args = parser.parse_args()
    if args.step_ms <= 0 or args.prefill_ms < 0:
        parser.error("--step-ms must be > 0 and --prefill-ms >= 0")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.step_ms, args.prefill_ms))


if __name__ == "__main__":
    main()
