"""Two network namespaces joined by a veth pair: the local target's two-host path.

As root, :func:`veth_pair` creates ``ragbench-ew-<pid>-<random>-client`` and ``...-server``, a veth
pair whose ends are created directly inside them (they never exist in the caller's namespace),
the addresses ``10.203.0.1/30`` (client) and ``10.203.0.2/30`` (server) on those ends, and brings
the links up. Traffic between the two addresses stays inside the namespaces this process created:
neither namespace has any other interface than its own loopback and its veth end, nor a route
elsewhere. Both namespaces are deleted on the way out (try/finally, also on SIGTERM while inside),
which also removes the veth pair and stops nothing but processes still running inside them.

:func:`unavailable_reason` says why the path cannot be used (not root, no ``ip``), so the caller
can fall back to loopback and record why.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from workload.errors import StepError

NAME_PREFIX = "ragbench-ew-"
CLIENT_ADDR = "10.203.0.1"
SERVER_ADDR = "10.203.0.2"
PREFIX_LEN = 30
CLIENT_IF = "ew-client"
SERVER_IF = "ew-server"
IP_TIMEOUT_S = 20.0


class NetnsError(Exception):
    """Creating the namespaces failed (the caller falls back to loopback and records this message)."""


@dataclass
class NetnsPair:
    client_ns: str
    server_ns: str
    client_addr: str = CLIENT_ADDR
    server_addr: str = SERVER_ADDR
    cleanup_errors: list[str] = field(default_factory=list)

    def exec_prefix(self, side: str) -> list[str]:
        """Command prefix running a program inside the ``client`` or ``server`` namespace."""
        ns = self.client_ns if side == "client" else self.server_ns
        return [ip_path() or "ip", "netns", "exec", ns]

    def describe(self) -> dict:
        return {"client": self.client_ns, "server": self.server_ns, "client_addr": self.client_addr,
                "server_addr": self.server_addr, "prefix_len": PREFIX_LEN}


def ip_path() -> str | None:
    return shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")
                                       if os.access(p, os.X_OK)), None)


def unavailable_reason() -> str | None:
    """None when the netns path can be tried, else why not (in words for the result)."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "not running as root (creating network namespaces needs CAP_SYS_ADMIN)"
    if ip_path() is None:
        return "the `ip` command (iproute2) is not installed"
    return None


def new_names(pid: int | None = None) -> tuple[str, str]:
    base = f"{NAME_PREFIX}{pid or os.getpid()}-{secrets.token_hex(3)}"
    return f"{base}-client", f"{base}-server"


def _ip(*args: str) -> None:
    argv = [ip_path() or "ip", *args]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NetnsError(f"`{' '.join(argv)}` failed: {exc}") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise NetnsError(f"`{' '.join(argv)}` failed: {detail[-1] if detail else f'exit {proc.returncode}'}")


def list_namespaces() -> list[str]:
    """Names of the network namespaces known to ``ip netns`` (empty when ``ip`` is missing)."""
    ip = ip_path()
    if ip is None:
        return []
    proc = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def _delete(names: list[str], pair: NetnsPair | None) -> list[str]:
    errors = []
    for name in reversed(names):
        try:
            _ip("netns", "delete", name)
        except NetnsError as exc:
            errors.append(str(exc))
    if errors:
        print("warning: network namespaces not removed: " + "; ".join(errors), file=sys.stderr)
        if pair is not None:
            pair.cleanup_errors.extend(errors)
    return errors


class Terminated(StepError):
    """SIGTERM arrived while the namespaces existed (raised so the cleanup runs)."""


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001
        raise Terminated("terminated by SIGTERM during the east-west probe (network namespaces removed)")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def veth_pair(pid: int | None = None) -> Iterator[NetnsPair]:
    """Create the two namespaces and the veth pair; always delete them afterwards.

    Raises NetnsError (after removing whatever was created) when any ``ip`` command fails.
    """
    client_ns, server_ns = new_names(pid)
    created: list[str] = []
    pair = NetnsPair(client_ns, server_ns)
    with _sigterm_raises():
        try:
            for ns in (client_ns, server_ns):
                _ip("netns", "add", ns)
                created.append(ns)
            _ip("link", "add", CLIENT_IF, "netns", client_ns, "type", "veth",
                "peer", "name", SERVER_IF, "netns", server_ns)
            for ns, dev, addr in ((client_ns, CLIENT_IF, CLIENT_ADDR), (server_ns, SERVER_IF, SERVER_ADDR)):
                _ip("-n", ns, "addr", "add", f"{addr}/{PREFIX_LEN}", "dev", dev)
                _ip("-n", ns, "link", "set", "lo", "up")
                _ip("-n", ns, "link", "set", dev, "up")
            for ns in (client_ns, server_ns):  # `ip netns exec` also needs to remount /sys: check it can
                _ip("netns", "exec", ns, "true")
            yield pair
        finally:
            _delete(created, pair)
