"""Sample CPU and memory of the local target's processes while a benchmark runs.

A background thread samples every ``interval_s`` seconds, so the load generator's event loop is
never blocked by it. Each sample walks the process trees of the stack's roots again (Ray starts
workers while it runs), puts every process into a group (vLLM, the Ray GCS, the raylet, the Serve
replica, ...) and adds the group's total CPU and resident memory to running statistics: memory use
is constant however long the run is. CPU is in percent of one core (100 = one busy core, as in
``top``); a process seen for the first time contributes from its second sample on, because CPU use
is measured between two samples.

Windows (:meth:`ProcessSampler.open_window` / :meth:`ProcessSampler.close_window`) slice the samples
to one scenario's measured part: opening takes a boundary sample at once and the window counts the
samples after it; closing takes one more sample, counted in the window, so the window's CPU figures
cover exactly the time between the two calls.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

from workload.telemetry.stats import RunningStats, usage_row

SOURCE = "psutil"
DEFAULT_INTERVAL_S = 0.5
DEFAULT_MAX_SAMPLES = 20_000  # ~2.8 h at 0.5 s; sampling stops there (the stats stay bounded anyway)

# (group, substrings of a Ray process's name or command line), first match wins.
RAY_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("ray-gcs", ("gcs_server",)),
    ("raylet", ("raylet",)),
    ("serve-replica", ("ServeReplica",)),
    ("serve-proxy", ("ProxyActor",)),
    ("serve-controller", ("ServeController",)),
    ("ray-workers", ("ray::",)),
)


@dataclass
class _Window:
    """The statistics of the samples taken while one window was open."""

    started_at: float
    stats: dict[tuple[str, str], RunningStats] = field(default_factory=dict)
    samples: int = 0
    finished_at: float | None = None


@dataclass
class _Request:
    """A window to open or close, done by the sampling thread right after its next sample."""

    action: str  # "open" or "close"
    name: str
    done: threading.Event = field(default_factory=threading.Event)


def classify(root: str, is_root: bool, name: str, cmdline: str) -> str:
    """The group of one process of the stack, from the root it descends from and its name."""
    if root == "vllm":
        return "vllm"  # the API server and its engine-core process
    if root != "rag-service":
        return root
    if is_root:
        return "service-driver"  # serve_local: the Ray driver that started Serve
    text = f"{name} {cmdline}"
    for group, needles in RAY_GROUPS:
        if any(n in text for n in needles):
            return group
    return "ray-other"  # dashboard agent, log monitor, runtime-env agent, ...


class ProcessSampler:
    """Sample the process trees of ``roots`` ({root name: pid}) until :meth:`stop`.

    ``extra`` adds processes recorded earlier under a root ({root name: [pids]}) that may have left
    its tree. ``include_client`` adds this process (the load generator) as component ``client`` and
    ``include_host`` the whole machine as component ``host``.
    """

    def __init__(self, roots: dict[str, int], *, extra: dict[str, Iterable[int]] | None = None,
                 interval_s: float = DEFAULT_INTERVAL_S, max_samples: int = DEFAULT_MAX_SAMPLES,
                 include_client: bool = True, include_host: bool = True) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.roots = dict(roots)
        self.extra = {k: set(v) for k, v in (extra or {}).items()}
        self.interval_s = interval_s
        self.max_samples = max_samples
        self.include_client = include_client
        self.include_host = include_host
        self.samples = 0
        self.errors: list[str] = []
        self._procs: dict[tuple[int, float], psutil.Process] = {}
        self._stats: dict[tuple[str, str], RunningStats] = {}
        self._seen: dict[str, set[int]] = {}
        self._host_prev: tuple[float, float] | None = None
        self._windows: dict[str, _Window] = {}
        self._closed: dict[str, _Window] = {}
        self._requests: list[_Request] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None
        self._finished_at: float | None = None

    # ---- one sample ------------------------------------------------------------------------
    def _members(self) -> list[tuple[str, bool, psutil.Process]]:
        found: dict[int, tuple[str, bool, psutil.Process]] = {}
        for root, pid in self.roots.items():
            try:
                proc = psutil.Process(pid)
                tree = [(True, proc)] + [(False, c) for c in proc.children(recursive=True)]
            except psutil.Error:
                tree = []
            for pid_ in self.extra.get(root, ()):
                try:
                    tree.append((False, psutil.Process(pid_)))
                except psutil.Error:
                    pass
            for is_root, p in tree:
                found.setdefault(p.pid, (root, is_root, p))
        if self.include_client:
            me = psutil.Process(os.getpid())
            found.setdefault(me.pid, ("client", True, me))
        return list(found.values())

    def _cached(self, proc: psutil.Process) -> tuple[psutil.Process, bool]:
        """The same Process object as last time (CPU % is measured between two calls on it)."""
        key = (proc.pid, proc.create_time())
        cached = self._procs.get(key)
        if cached is not None:
            return cached, False
        self._procs[key] = proc
        proc.cpu_percent(None)  # prime: the first call has no interval to measure over
        return proc, True

    def _host_cpu(self) -> float | None:
        """The machine's busy CPU time per wall time since the last call, 100 = one core.
        (Measured here rather than with psutil.cpu_percent, whose state is per calling thread.)"""
        times, now = psutil.cpu_times(), time.monotonic()
        busy = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        previous, self._host_prev = self._host_prev, (now, busy)
        if previous is None or now <= previous[0]:
            return None
        return max(0.0, (busy - previous[1]) / (now - previous[0]) * 100)

    def sample_once(self, record: bool = True) -> dict[str, dict[str, float]]:
        """Take one sample; add it to the statistics unless ``record`` is false (priming)."""
        groups: dict[str, dict[str, float]] = {}
        for root, is_root, raw in self._members():
            try:
                proc, new = self._cached(raw)
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        continue
                    group = classify(root, is_root, proc.name(), " ".join(proc.cmdline()))
                    cpu = 0.0 if new else proc.cpu_percent(None)
                    rss = proc.memory_info().rss
            except psutil.Error:
                continue  # it ended between listing and reading: not part of this sample
            g = groups.setdefault(group, {"cpu_percent": 0.0, "memory_bytes": 0.0, "processes": 0.0})
            g["cpu_percent"] += cpu
            g["memory_bytes"] += rss
            g["processes"] += 1
            self._seen.setdefault(group, set()).add(proc.pid)
        stack = [g for name, g in groups.items() if name != "client"]
        if stack:
            groups["total"] = {m: sum(g[m] for g in stack) for m in ("cpu_percent", "memory_bytes", "processes")}
        host_cpu = self._host_cpu()
        if self.include_host and host_cpu is not None:
            groups["host"] = {"cpu_percent": host_cpu, "memory_bytes": float(psutil.virtual_memory().used)}
        if record:
            self.samples += 1
            targets = [self._stats] + [w.stats for w in self._windows.values()]
            for w in self._windows.values():
                w.samples += 1
            for group, values in groups.items():
                for metric, value in values.items():
                    for stats in targets:
                        stats.setdefault((group, metric), RunningStats()).add(value)
        return groups

    # ---- the background thread -------------------------------------------------------------
    def start(self) -> ProcessSampler:
        self.sample_once(record=False)
        self._started_at = time.time()
        self._thread = threading.Thread(target=self._loop, name="process-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            if self.samples < self.max_samples:
                try:
                    self.sample_once()
                except Exception as exc:  # noqa: BLE001 - telemetry never breaks the benchmark
                    if len(self.errors) < 5:
                        self.errors.append(f"{type(exc).__name__}: {exc}")
            self._serve_requests()

    def _serve_requests(self) -> None:
        """Open and close the windows asked for since the last sample (which closing windows count,
        and opening ones do not)."""
        with self._lock:
            requests, self._requests = self._requests, []
        now = time.time()
        for req in requests:
            if req.action == "open":
                self._windows[req.name] = _Window(started_at=now)
            else:
                window = self._windows.pop(req.name, None) or _Window(started_at=now)
                window.finished_at = now
                self._closed[req.name] = window
            req.done.set()

    def _ask(self, action: str, name: str, timeout_s: float) -> None:
        req = _Request(action, name)
        with self._lock:
            self._requests.append(req)
        if self._thread is None or not self._thread.is_alive():
            self._serve_requests()  # not sampling (not started, or stopped): book-keeping only
            return
        self._wake.set()
        if not req.done.wait(timeout_s) and len(self.errors) < 5:
            self.errors.append(f"window {name!r}: the sampler did not {action} it within {timeout_s:g} s")

    def open_window(self, name: str, timeout_s: float = 5.0) -> None:
        """Start counting samples for window ``name`` after a boundary sample taken now (waits for it)."""
        self._ask("open", name, timeout_s)

    def close_window(self, name: str, timeout_s: float = 5.0) -> dict:
        """Take a last sample into window ``name`` (waits for it) and return the window's figures,
        shaped like :meth:`result`."""
        self._ask("close", name, timeout_s)
        window = self._closed.pop(name, None)
        if window is None:  # the sampler is stuck: report what the window has so far (read only:
            # the sampling thread owns the open windows and closes this one when it gets to it)
            open_ = self._windows.get(name)
            window = _Window(started_at=open_.started_at if open_ else time.time(),
                             stats=dict(open_.stats) if open_ else {}, samples=open_.samples if open_ else 0,
                             finished_at=time.time())
        return self._summary(window.stats, window.samples,
                             {"start_epoch": window.started_at, "end_epoch": window.finished_at})

    def stop(self) -> dict:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10 + self.interval_s)
        self._serve_requests()  # anything asked for while stopping
        self._finished_at = time.time()
        return self.result()

    def result(self) -> dict:
        """The figures over every sample since :meth:`start`."""
        return self._summary(self._stats, self.samples,
                             {"start_epoch": self._started_at, "end_epoch": self._finished_at})

    def _summary(self, stats: dict[tuple[str, str], RunningStats], samples: int, window: dict) -> dict:
        units = {"cpu_percent": "percent", "memory_bytes": "bytes", "processes": "count"}
        rows = [usage_row(SOURCE, group, metric, units[metric], st) for (group, metric), st in sorted(stats.items())]
        return {"source": SOURCE, "interval_s": self.interval_s, "samples": samples,
                "truncated": self.samples >= self.max_samples, "window": window,
                "roots": self.roots, "pids": {g: sorted(p) for g, p in sorted(self._seen.items())},
                "rows": rows, "errors": list(self.errors)}
