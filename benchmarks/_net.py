"""Ports for the benchmarks' stand-in servers. Standard library only: client_capacity's spawned
workers import their script again, and stay as lean as they were."""

from __future__ import annotations

import socket
import time


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout_s: float = 10) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port`` (a stand-in server)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"stand-in server did not listen on {port}")
