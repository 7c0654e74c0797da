"""The east-west step: several iperf3 TCP samples between a client and a server, with placement."""

from __future__ import annotations

import socket

from workload.eastwest import iperf
from workload.errors import StepError
from workload.local.processes import require_port_free


def run_local(duration_s: float = 3, streams: int = 1, samples: int = 3, port: int = 15201) -> dict:
    """Local target: server and client on this machine over loopback (path ``loopback``)."""
    iperf.iperf3_path()
    require_port_free(port, "the iperf3 server")
    server = iperf.start_server(port)
    try:
        forward = [iperf.run_client("127.0.0.1", port, duration_s, streams, reverse=False) for _ in range(samples)]
        reverse = [iperf.run_client("127.0.0.1", port, duration_s, streams, reverse=True) for _ in range(samples)]
    except iperf.IperfError as exc:
        raise StepError(f"iperf3 failed: {exc}") from exc
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except Exception:  # noqa: BLE001
            server.kill()
    host = socket.gethostname()
    return placement(host, host, "loopback") | {
        "duration_s": duration_s, "streams": streams,
        "tcp": iperf.summarize_samples(forward),
        "tcp_reverse": iperf.summarize_samples(reverse),
    }


def run_remote(server: str, port: int, duration_s: float, streams: int, samples: int,
               client_node: str, server_node: str) -> dict:
    """Cluster target: this pod is the client of the iperf3 server Service."""
    try:
        forward = [iperf.run_client(server, port, duration_s, streams, reverse=False) for _ in range(samples)]
        reverse = [iperf.run_client(server, port, duration_s, streams, reverse=True) for _ in range(samples)]
    except iperf.IperfError as exc:
        raise StepError(f"iperf3 against {server}:{port} failed: {exc}") from exc
    except OSError as exc:
        raise StepError(f"iperf3 could not run: {exc}") from exc
    return placement(client_node, server_node, "pod-network") | {
        "duration_s": duration_s, "streams": streams,
        "tcp": iperf.summarize_samples(forward),
        "tcp_reverse": iperf.summarize_samples(reverse),
    }


def placement(client_node: str, server_node: str, path: str) -> dict:
    cross = bool(client_node and server_node and client_node != server_node)
    flags = [] if cross or path == "loopback" else ["same_node"]
    if not client_node or not server_node:
        raise StepError("client and server node names are required to record placement")
    return {"client_node": client_node, "server_node": server_node, "cross_node": cross,
            "path": path, "flags": flags}
