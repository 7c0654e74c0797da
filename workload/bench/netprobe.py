"""The client's network round trip to the endpoint, measured as TCP connect time.

A TCP connect returns when the server's SYN-ACK arrives: one network round trip plus the kernels'
handshake work, and no application code. Taken before the load (nothing else in flight), the
samples say how much of a TTFT is the network: a request on an open keep-alive connection pays
one round trip (request out, first token back) on top of the server's own time.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class ConnectSamples:
    host: str
    port: int
    samples_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def to_dict(self) -> dict:
        return {"host": self.host, "port": self.port, "samples_ms": self.samples_ms, "errors": self.errors,
                "first_error": self.first_error}


def host_port(base_url: str) -> tuple[str, int]:
    """Host and TCP port of an http(s) URL (the scheme's default port when none is given)."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {base_url!r}")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def tcp_connect_samples(base_url: str, count: int = 20, timeout_s: float = 2.0, budget_s: float = 10.0,
                        gap_s: float = 0.005) -> ConnectSamples:
    """``count`` timed ``socket.create_connection`` calls to the endpoint, one at a time.

    Each connect is bounded by ``timeout_s`` and the whole probe by ``budget_s`` (it stops early,
    with fewer samples, when the budget runs out). A failed connect is counted, never timed. The
    name is resolved once beforehand so DNS time is not part of a sample.
    """
    host, port = host_port(base_url)
    out = ConnectSamples(host, port)
    if count <= 0:
        return out
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        out.errors, out.first_error = count, f"resolve {host}: {exc}"
        return out
    deadline = time.perf_counter() + budget_s
    for _ in range(count):
        if time.perf_counter() >= deadline:
            break
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout_s)
        try:
            t0 = time.perf_counter()
            sock.connect(address)
            t1 = time.perf_counter()
            out.samples_ms.append((t1 - t0) * 1000)
        except OSError as exc:
            out.errors += 1
            out.first_error = out.first_error or f"{type(exc).__name__}: {exc}"
        finally:
            sock.close()
        time.sleep(gap_s)  # let the server's accept loop drop the idle connection
    return out
