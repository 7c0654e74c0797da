"""Managed background processes of the local target: started detached, tracked by PID files.

Each process gets its own session (process group), a log file and a PID file in the state folder,
so a later step (teardown, possibly in another Airflow task process) can stop exactly the
processes this project started, and their children, without leaving orphans.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection
from pathlib import Path

import httpx
import psutil

from workload.errors import StepError


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# Above the ports Ray gives its workers (10002-19999 by default).
LOWEST_FREE_PORT = 20000
LINUX_EPHEMERAL_PORTS = (32768, 60999)


def ephemeral_ports() -> tuple[int, int]:
    """The range the OS draws from for outgoing connections and ``bind(0)``."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return LINUX_EPHEMERAL_PORTS


def free_port(avoid: Collection[int] = ()) -> int:
    """A port on 127.0.0.1 that nothing uses right now, outside the OS's ephemeral range.

    A server told its port here may bind it many seconds later (the replica binds after Ray has
    started). A port from the ephemeral range can be taken in between by any outgoing connection
    or by any ``bind(0)``, Ray's own included; a port outside it can only be taken on purpose."""
    low, high = ephemeral_ports()
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(LOWEST_FREE_PORT, 65536)
        if not low <= port <= high and port not in avoid and port_free(port):
            return port
    raise StepError(f"no free port on 127.0.0.1 in {LOWEST_FREE_PORT}-65535 outside the "
                    f"ephemeral range {low}-{high} after 200 tries")


def require_port_free(port: int, what: str) -> None:
    if not port_free(port):
        raise StepError(f"port {port} on 127.0.0.1 is in use; {what} needs it "
                        f"(stop what holds it, or choose another port)")


class ManagedProcess:
    def __init__(self, name: str, state_dir: Path) -> None:
        self.name = name
        self.run_dir = Path(state_dir) / "run"
        self.log_path = Path(state_dir) / "logs" / f"{name}.log"
        self.pid_path = self.run_dir / f"{name}.json"

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        if self.running():
            raise StepError(f"{self.name} is already running (pid {self.pid()}); run teardown first")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"\n--- starting {self.name} at {time.ctime()}: {' '.join(argv)}\n".encode())
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env={**os.environ, **(env or {})}, start_new_session=True)
        self._write({"pid": proc.pid, "argv": argv, "started": time.time(), "children": []})
        return proc.pid

    def _write(self, info: dict) -> None:
        self.pid_path.write_text(json.dumps(info))

    def info(self) -> dict | None:
        try:
            return json.loads(self.pid_path.read_text())
        except (OSError, ValueError):
            return None

    def pid(self) -> int | None:
        info = self.info()
        return info["pid"] if info else None

    def _process(self) -> psutil.Process | None:
        info = self.info()
        if not info:
            return None
        try:
            proc = psutil.Process(info["pid"])
            # Guard against PID reuse: the process must have started when we recorded it.
            if proc.create_time() > info["started"] + 5 or proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def running(self) -> bool:
        return self._process() is not None

    def remember_children(self) -> None:
        """Record the current descendants, so teardown finds them even if they leave the group."""
        proc, info = self._process(), self.info()
        if proc is None or info is None:
            return
        try:
            kids = [{"pid": c.pid, "started": c.create_time()} for c in proc.children(recursive=True)]
        except psutil.Error:
            return
        known = {k["pid"] for k in info.get("children", [])}
        info["children"] = info.get("children", []) + [k for k in kids if k["pid"] not in known]
        self._write(info)

    def wait_healthy(self, check: Callable[[], bool], timeout_s: float, what: str) -> float:
        """Poll ``check`` until it passes; fail early if the process dies. Returns seconds waited."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout_s:
            if not self.running():
                raise StepError(f"{self.name} exited while starting; see {self.log_path}: {self.log_tail()}")
            if check():
                return time.monotonic() - t0
            time.sleep(0.5)
        raise StepError(f"{self.name} not {what} after {timeout_s:.0f} s; see {self.log_path}")

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])[:400]

    def stop(self, timeout_s: float = 20.0) -> bool:
        """Stop the process group, then any recorded descendant still alive. True if it was running."""
        info = self.info()
        if info is None:
            return False
        proc = self._process()
        was_running = proc is not None
        targets: list[psutil.Process] = []
        if proc is not None:
            try:
                targets = [proc, *proc.children(recursive=True)]
                os.killpg(proc.pid, signal.SIGTERM)
            except (psutil.Error, ProcessLookupError, PermissionError):
                pass
        for child in info.get("children", []):
            try:
                p = psutil.Process(child["pid"])
                if abs(p.create_time() - child["started"]) < 1:
                    targets.append(p)
                    p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(targets, timeout=timeout_s)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        self.pid_path.unlink(missing_ok=True)
        return was_running


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False
