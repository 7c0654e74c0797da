"""Live RAG services for the workload tests: vLLM (CPU) + Ray Serve + embedded Qdrant on free ports.

``start_service`` runs the service the way the local stack does, but with extra settings and
without waiting for /readyz (a fault test may start it with a dependency down).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

from workload.local.processes import free_port, http_ok
from workload.local.stack import LocalStack

API_TOKEN = "test-token-0123456789abcdef"
DOCS = [
    {"name": "gpu.md", "content": "# GPU pools\n\nGPU nodes carry the nvidia.com/gpu taint. " * 40},
    {"name": "net.txt", "content": "Pod to pod throughput is measured with iperf3 across nodes. " * 60},
]


def start_service(stack: LocalStack, **overrides) -> None:
    """Start the RAG service of ``stack`` with its usual settings plus ``overrides``; wait for /healthz."""
    stack.start_service(**overrides)
    stack.service.wait_healthy(lambda: http_ok(f"{stack.service_url}/healthz", timeout_s=5), 600, "healthy")
    stack.service.remember_children()


def wait_until(check, timeout_s: float, every_s: float = 0.2):
    """Poll ``check`` until it returns a truthy value; return it, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    return None


@contextlib.contextmanager
def live_service(state_dir: Path, **overrides) -> Iterator[LocalStack]:
    stack = LocalStack(state_dir, llm_port=free_port(), serve_port=free_port())
    try:
        stack.start_llm(stack.build_model())
        start_service(stack, **overrides)
        yield stack
    finally:
        stack.down()


def stream_events(client, body: dict) -> list[tuple[str, dict]]:
    """POST /query/stream with an httpx client; every SSE event as (name, data)."""
    from workload.bench.sse import SSEParser

    parser, events = SSEParser(), []
    with client.stream("POST", "/query/stream", json=body) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_raw():
            events += [(e.event, e.json()) for e in parser.feed(chunk)]
    return events
