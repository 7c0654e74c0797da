"""The local target: vLLM on CPU plus the RAG service on Ray Serve, as managed processes.

``up`` starts what is missing and waits until the service's /readyz passes; ``down`` stops
everything it started. Both are idempotent and safe to call after a failed ``up``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from workload.errors import StepError
from workload.llm.tiny_model import MODEL_ID, build_tiny_model
from workload.local.processes import ManagedProcess, http_ok, require_port_free


# Ray starts its workers at nice 15; next to a busy vLLM on few cores that starves the replica
# and tokens reach the client in one burst at the end. The service must run at normal priority.
# One torch thread for the query embedder leaves the cores to vLLM.
# The tiny model's context window, and the retrieved text that fits in it with room for the
# question and the output (its tokenizer averages ~3 characters per token on the corpus).
MAX_MODEL_LEN = 2048
LOCAL_CONTEXT_CHARS = 3000

SERVICE_ENV = {"RAY_worker_niceness": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _alive(pid: int, started: float) -> bool:
    """The process recorded as (pid, start time) still runs (the PID was not reused)."""
    try:
        return abs(psutil.Process(pid).create_time() - started) < 1
    except psutil.Error:
        return False


ENGINE_CORE_NICENESS = 19


def engine_core_gives_way(llm_pid: int) -> int | None:
    """Lower the scheduling priority of vLLM's engine-core process to the least (nice 19); returns
    the number of its threads changed (None when the process is not found).

    While the model worker runs a step, the engine core waits for the result by spinning with
    sched_yield (vLLM's shared-memory queue), on whichever core is free. At normal priority that
    spin competes with the API server, the RAG service and the load client on a small machine; at
    nice 19 it runs only when they do not want the core. Raising niceness needs no privilege.
    On 2 cores, RAG at concurrency 16 went from 513 to 350 ms TTFT p50 and from 811 to 1,073
    output tokens/s (docs/service.md, which also says why the engine core is not bound to the
    worker's cores instead)."""
    try:
        procs = psutil.Process(llm_pid).children(recursive=True)
        core = next((p for p in procs if (p.cmdline() or [""])[0].startswith("VLLM::EngineCore")), None)
        threads = core.threads() if core is not None else None
    except psutil.Error:
        return None
    if threads is None:
        return None
    changed = 0
    for thread in threads:  # niceness is per thread on Linux; threads started later inherit it
        try:
            os.setpriority(os.PRIO_PROCESS, thread.id, ENGINE_CORE_NICENESS)
            changed += 1
        except OSError:  # the thread ended meanwhile
            pass
    return changed


@dataclass
class LocalStack:
    state_dir: Path
    llm_port: int = 18100
    serve_port: int = 18000
    llm_ready_timeout_s: float = 600
    serve_ready_timeout_s: float = 600

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()
        self.llm = ManagedProcess("vllm", self.state_dir)
        self.service = ManagedProcess("rag-service", self.state_dir)

    @property
    def llm_url(self) -> str:
        return f"http://127.0.0.1:{self.llm_port}"

    @property
    def service_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    def _env(self) -> dict[str, str]:
        # vLLM and torch write caches and sockets; keep them inside the project's state folder.
        tmp = self.state_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return {
            "VLLM_CACHE_ROOT": str(self.state_dir / "cache" / "vllm"),
            "TORCHINDUCTOR_CACHE_DIR": str(self.state_dir / "cache" / "torchinductor"),
            "TMPDIR": str(tmp),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "RAY_USAGE_STATS_ENABLED": "0",
            "TOKENIZERS_PARALLELISM": "false",
        }

    def build_model(self, corpus_dir: Path | None = None) -> Path:
        # The tokenizer is trained on the shipped corpus unless told otherwise.
        corpus_dir = corpus_dir or Path(__file__).resolve().parents[1] / "corpus" / "docs"
        return build_tiny_model(self.state_dir / "models" / "tiny-qwen2", corpus_dir)

    def start_llm(self, model_dir: Path) -> float:
        """Start vLLM unless it runs; wait until healthy. Returns the seconds waited."""
        if not self.llm.running():
            require_port_free(self.llm_port, "vLLM")
            self.llm.start([
                sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(model_dir), "--served-model-name", MODEL_ID,
                "--host", "127.0.0.1", "--port", str(self.llm_port),
                "--dtype", "float32", "--max-model-len", str(MAX_MODEL_LEN),
                "--kv-cache-memory-bytes", "256M", "--enforce-eager",
                "--disable-uvicorn-access-log",
            ], env=self._env())
        waited = self.llm.wait_healthy(lambda: http_ok(f"{self.llm_url}/health"), self.llm_ready_timeout_s,
                                       "healthy")
        self.llm.remember_children()
        engine_core_gives_way(self.llm.pid())
        return round(waited, 3)

    def start_service(self, **overrides) -> None:
        """Start the RAG service (Ray Serve) with the local settings plus ``overrides`` (tests use them
        for limits and tokens); returns once the process is started, not when it is ready."""
        settings = {"llm_base_url": f"{self.llm_url}/v1", "llm_model_id": MODEL_ID,
                    "qdrant_path": str(self.state_dir / "qdrant"), "max_context_chars": LOCAL_CONTEXT_CHARS,
                    **overrides}
        ray_tmp = self.state_dir / "ray"
        ray_tmp.mkdir(parents=True, exist_ok=True)
        self.service.start([
            sys.executable, "-m", "workload.local.serve_local", "--port", str(self.serve_port),
            "--settings", json.dumps(settings), "--ray-temp-dir", str(ray_tmp),
            "--num-cpus", str(max(os.cpu_count() or 2, 2)),
        ], env={**self._env(), **SERVICE_ENV})

    def up(self, corpus_dir: Path | None = None) -> dict:
        t0 = time.monotonic()
        model_dir = self.build_model(corpus_dir)
        timings = {"model_build_s": round(time.monotonic() - t0, 3)}
        try:
            timings["llm_ready_s"] = self.start_llm(model_dir)

            if not self.service.running():
                require_port_free(self.serve_port, "the RAG service")
                self.start_service()
            timings["service_ready_s"] = round(self.service.wait_healthy(
                lambda: http_ok(f"{self.service_url}/readyz", timeout_s=5), self.serve_ready_timeout_s,
                "ready"), 3)
            self.service.remember_children()
        except BaseException:
            self.down()
            raise
        return {
            "target_kind": "local",
            "endpoint": self.service_url,
            "llm_endpoint": self.llm_url,
            "model_id": MODEL_ID,
            "model_dir": str(model_dir),
            "pids": {"vllm": self.llm.pid(), "rag-service": self.service.pid()},
            "timings": timings,
        }

    def down(self) -> dict:
        stopped = {}
        for proc in (self.service, self.llm):
            proc.remember_children()
            stopped[proc.name] = proc.stop()
        return {"stopped": stopped}

    def telemetry_roots(self) -> dict:
        """What the telemetry of a benchmark step observes: the running processes' PIDs ({name:
        pid}), the descendants recorded when they started, and vLLM's /metrics URL (from the port
        vLLM was started with, so another process than the one that started the stack finds it)."""
        roots, extra, llm_metrics_url = {}, {}, None
        for proc in (self.llm, self.service):
            info = proc.info()
            if info is None or not proc.running():
                continue
            roots[proc.name] = info["pid"]
            extra[proc.name] = [c["pid"] for c in info.get("children", []) if _alive(c["pid"], c["started"])]
            if proc is self.llm and "--port" in info.get("argv", []):
                port = info["argv"][info["argv"].index("--port") + 1]
                llm_metrics_url = f"http://127.0.0.1:{port}/metrics"
        return {"roots": roots, "extra": extra, "llm_metrics_url": llm_metrics_url}

    def require_up(self) -> None:
        if not http_ok(f"{self.service_url}/readyz", timeout_s=5):
            raise StepError(f"the RAG service at {self.service_url} is not ready; run the deploy step first")
