"""A fast stand-in for the RAG service's SSE endpoint, to measure the load generator itself.

It answers every POST with `meta`, N `token` events `itl_ms` apart (the first one `ttft_ms` after
the request, `itl_ms` when not given), and `done` (HTTP/1.1, chunked, keep-alive), doing as little
work as possible: every event's bytes are built once at start, and each token is one timer
callback writing those bytes (no coroutine per token). It measures the client, never the pipeline.

    python benchmarks/standin_sse_server.py --port 18900 --tokens 50 --itl-ms 10 --ttft-ms 200
"""

from __future__ import annotations

import argparse
import asyncio
import json


def http_chunk(payload: bytes) -> bytes:
    """One chunk of a chunked HTTP/1.1 body."""
    return f"{len(payload):x}\r\n".encode() + payload + b"\r\n"


def _event(name: str, data: dict) -> bytes:
    return http_chunk(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode())


class Responses:
    """The bytes of every response, built once."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens
        self.head = (b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                     + _event("meta", {"request_id": "standin", "replica_id": "standin", "model_id": "standin",
                                       "k": 0, "documents": [], "timings": {}}))
        self.token = _event("token", {"text": "tok", "tokens": 1})
        self.done = _event("done", {"request_id": "standin", "token_count": tokens, "timings": {}}) + b"0\r\n\r\n"


def stream(writer: asyncio.StreamWriter, responses: Responses, itl_s: float, ttft_s: float) -> asyncio.Future:
    """Write one response: head and meta now, each token from a timer callback; the future is
    done when the response is complete (or the connection went away)."""
    loop = asyncio.get_running_loop()
    finished = loop.create_future()
    transport = writer.transport
    left = responses.tokens
    transport.write(responses.head)

    def tick() -> None:
        nonlocal left
        if transport.is_closing():
            finished.done() or finished.set_result(None)
            return
        left -= 1
        if left > 0:
            transport.write(responses.token)
            loop.call_later(itl_s, tick)
        else:
            transport.write(responses.token + responses.done if responses.tokens else responses.done)
            finished.done() or finished.set_result(None)

    if responses.tokens:
        loop.call_later(ttft_s, tick)
    else:
        tick()
    return finished


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, responses: Responses, itl_s: float,
                 ttft_s: float | None = None) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            await stream(writer, responses, itl_s, itl_s if ttft_s is None else ttft_s)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve(port: int, tokens: int, itl_ms: float, ttft_ms: float | None = None) -> None:
    ttft_s = None if ttft_ms is None else ttft_ms / 1000
    responses = Responses(tokens)
    server = await asyncio.start_server(lambda r, w: handle(r, w, responses, itl_ms / 1000, ttft_s), "127.0.0.1",
                                        port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--itl-ms", type=float, default=10)
    parser.add_argument("--ttft-ms", type=float, default=None, help="delay of the first token (default: itl)")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args.port, args.tokens, args.itl_ms, args.ttft_ms))


if __name__ == "__main__":
    main()
