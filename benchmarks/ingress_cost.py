"""What does it cost the RAG service to take in a request, before any RAG work? A diagnostic for
the concurrency-16 overhead of `rag_overhead.py --isolated` (no target of its own).

A closed loop at concurrency 16 sends its requests in waves: 16 arrive within a millisecond. On
one core, the last of a wave reaches its handler only after the HTTP stack has taken in the 15
before it, so the stack's CPU per request, times the wave, lands in TTFT. This measures that cost
with the cheapest route each server has, so that no RAG or LLM work is in it:

- the service: `GET /healthz`, through uvicorn, Ray Serve's direct ingress (the replica serves
  HTTP itself), FastAPI and the service's guard middleware;
- vLLM: `GET /health`, through its own uvicorn and FastAPI, in its API server process.

For each, `--bursts` waves of `--burst` concurrent requests on kept-alive connections (the load
generator's HTTP client), and the serving process's CPU time (user + system) over them. Printed:
CPU per request, the service's over vLLM's, and per wave the mean and last completion time. vLLM
runs on one core and the service and this client on the other (vLLM's API server then shares its
core with vLLM's engine, which only handicaps vLLM; the client's share of the service's core
lengthens the service's waves, not its CPU per request).

The instrument is checked first against a stand-in with known truth: a server on the service's core
that burns exactly `--burn-ms` of CPU per GET, one request after another. Its CPU per request must
read `burn-ms` (+25% for its own HTTP handling), and a wave's mean and last completion
`burn-ms * (burst + 1) / 2` and `burn-ms * burst` (-10%, +25%); otherwise the run fails before
the stack starts. Run:

    .state/venv-workload/bin/python benchmarks/ingress_cost.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _local import local_stack, pin_threads  # noqa: E402
from _net import free_port, wait_listening  # noqa: E402

from workload.bench.http1 import Pool  # noqa: E402
from workload.telemetry.processes import classify  # noqa: E402


async def waves(base_url: str, path: str, size: int, count: int) -> list[tuple[float, float]]:
    """``count`` waves of ``size`` concurrent GETs; per wave (mean, last) completion in ms."""
    pool = Pool(base_url)
    out = []

    async def one() -> float:
        conn, _ = await pool.connect()
        exchange = pool.start(conn, pool.request_bytes("GET", path, b""), time.perf_counter, lambda *_: None)
        try:
            await exchange.result
            if exchange.status != 200:
                raise SystemExit(f"FAIL: GET {base_url}{path} answered {exchange.status}")
        finally:
            pool.release(conn, exchange)
        return time.perf_counter()

    try:
        for _ in range(count):
            t0 = time.perf_counter()
            done = await asyncio.gather(*(one() for _ in range(size)))
            out.append(((sum(done) / size - t0) * 1000, (max(done) - t0) * 1000))
            await asyncio.sleep(0.02)  # waves apart, as a closed loop's are while they stream
    finally:
        await pool.aclose()
    return out


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def measure(base_url: str, path: str, proc: psutil.Process, size: int, count: int) -> dict[str, float]:
    asyncio.run(waves(base_url, path, size, 5))  # connections opened, code paths warm
    before = cpu_s(proc)
    got = asyncio.run(waves(base_url, path, size, count))
    used = cpu_s(proc) - before
    return {"cpu_ms": used / (size * count) * 1000, "mean_ms": median(m for m, _ in got),
            "last_ms": median(last for _, last in got)}


def serve_replica(service_pid: int) -> psutil.Process:
    """The Serve replica process, told apart as the stack's process telemetry tells it."""
    replicas = [p for p in psutil.Process(service_pid).children(recursive=True)
                if classify("rag-service", False, p.name(), " ".join(p.cmdline())) == "serve-replica"]
    if len(replicas) != 1:
        raise SystemExit(f"FAIL: expected one Serve replica process, found {len(replicas)}")
    return replicas[0]


class BurningServer(asyncio.Protocol):
    """The stand-in: answers each GET after burning ``burn_s`` of this thread's CPU."""

    def __init__(self, burn_s: float) -> None:
        self.burn_s, self.pending = burn_s, b""

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.pending += data
        while b"\r\n\r\n" in self.pending:  # bodiless GETs: a request ends with its head
            _, self.pending = self.pending.split(b"\r\n\r\n", 1)
            end = time.thread_time() + self.burn_s
            while time.thread_time() < end:
                pass
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


async def serve_standin(port: int, burn_ms: float) -> None:
    server = await asyncio.get_running_loop().create_server(lambda: BurningServer(burn_ms / 1000), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def check_instrument(burn_ms: float, size: int, count: int) -> list[str]:
    """Measure the stand-in (started here, so on this process's core) and judge it against its
    known truth; the misses, if any."""
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--standin-port", str(port), "--burn-ms", str(burn_ms)])
    try:
        wait_listening(port)
        got = measure(f"http://127.0.0.1:{port}", "/", psutil.Process(server.pid), size, count)
    finally:
        server.terminate()
        server.wait(10)
    truth = {"cpu_ms": (burn_ms, 1.0, 1.25), "mean_ms": (burn_ms * (size + 1) / 2, 0.9, 1.25),
             "last_ms": (burn_ms * size, 0.9, 1.25)}
    print(f"instrument check, a stand-in burning {burn_ms:g} ms of CPU per GET: "
          + ", ".join(f"{key} {got[key]:.2f} (truth {want:.2f})" for key, (want, _, _) in truth.items()))
    return [f"{key} read {got[key]:.2f}, truth {want:.2f} (allowed x{lo:g} to x{hi:g})"
            for key, (want, lo, hi) in truth.items() if not want * lo <= got[key] <= want * hi]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=16, help="requests per wave (the concurrency)")
    parser.add_argument("--bursts", type=int, default=200)
    parser.add_argument("--burn-ms", type=float, default=1.0, help="the stand-in's CPU per request")
    parser.add_argument("--standin-port", type=int, help=argparse.SUPPRESS)  # run as the stand-in
    args = parser.parse_args()
    if args.standin_port:
        asyncio.run(serve_standin(args.standin_port, args.burn_ms))
        return 0
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("needs two cores")
    llm_cores, other_cores = {cores[0]}, {cores[1]}
    print(f"vLLM on core {cores[0]}; the service and this client on core {cores[1]}; "
          f"{args.bursts} waves of {args.burst} GETs each")
    pin_threads(os.getpid(), other_cores)
    missed = check_instrument(args.burn_ms, args.burst, 50)
    if missed:
        print(f"FAIL: the instrument misses the stand-in's known truth: {'; '.join(missed)}")
        return 1
    with local_stack(with_service=True, llm_cores=llm_cores, other_cores=other_cores) as stack:
        pin_threads(os.getpid(), other_cores)
        figures = {
            "service GET /healthz": measure(stack.service_url, "/healthz", serve_replica(stack.service.pid()),
                                            args.burst, args.bursts),
            "vLLM GET /health": measure(stack.llm_url, "/health", psutil.Process(stack.llm.pid()),
                                        args.burst, args.bursts),
        }
    print(f"{'':22s} {'CPU per request':>16s} {'wave: mean done':>16s} {'wave: last done':>16s}  (p50 over waves)")
    for name, f in figures.items():
        print(f"{name:22s} {f['cpu_ms']:13.3f} ms {f['mean_ms']:13.2f} ms {f['last_ms']:13.2f} ms")
    service, vllm = figures.values()
    print(f"service / vLLM, CPU per request: {service['cpu_ms'] / vllm['cpu_ms']:.2f}; "
          f"a wave's mean completion, service - vLLM: {service['mean_ms'] - vllm['mean_ms']:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
