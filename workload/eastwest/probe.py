"""The east-west step: iperf3 TCP (both directions) and UDP samples and a request/response latency
probe between a client and a server, with placement.

Probes: ``tcp`` (client -> server), ``tcp_reverse`` (iperf3 ``-R``: server -> client), ``udp`` (at a
set rate: jitter and loss), ``latency`` (small TCP round trips: p50/p99). Samples are taken in
rounds (one of each probe per round), so slow drift of the path spreads over every probe instead of
biasing one. A probe that fails is recorded in ``errors`` and flagged ``<probe>_failed``, and the
others still run; when every probe fails the step fails with the first error.
"""

from __future__ import annotations

import socket
from contextlib import ExitStack

from workload.eastwest import iperf, latency, netns
from workload.errors import StepError
from workload.local.processes import require_port_free

PROBES = ("tcp", "tcp_reverse", "udp", "latency")
IPERF_PROBES = ("tcp", "tcp_reverse", "udp")
DEFAULT_UDP_RATE = "100M"
LOCAL_PATHS = ("auto", "netns-veth", "loopback")


def parse_probes(probes: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """``"tcp,udp"`` or a list -> the probes in their canonical order; StepError on an unknown name."""
    if probes is None:
        return PROBES
    names = [p.strip() for p in (probes.split(",") if isinstance(probes, str) else probes) if p.strip()]
    unknown = [p for p in names if p not in PROBES]
    if unknown or not names:
        raise StepError(f"unknown east-west probe(s) {', '.join(unknown) or '(none given)'}: "
                        f"choose from {', '.join(PROBES)}")
    return tuple(p for p in PROBES if p in names)


def _check(duration_s: float, streams: int, samples: int) -> None:
    if duration_s <= 0 or streams < 1 or samples < 1:
        raise StepError(f"east-west needs duration > 0, streams >= 1 and samples >= 1 "
                        f"(got {duration_s}, {streams}, {samples})")


def measure(server: str, port: int, *, duration_s: float = 3, streams: int = 1, samples: int = 3,
            probes: str | list[str] | tuple[str, ...] | None = None, udp_rate: str = DEFAULT_UDP_RATE,
            latency_host: str | None = None, latency_port: int | None = None, latency_round_trips: int = 1000,
            latency_payload_bytes: int = 32, latency_time_budget_s: float = 5.0,
            client_prefix: list[str] | None = None, retries: int = 3, backoff_s: float = 1.0) -> dict:
    """Run the probes against an iperf3 server (and, for ``latency``, an echo server) and summarize.

    Returns ``{probe: summary, ..., "errors": {probe: message}}``; the caller adds placement.
    ``client_prefix`` runs the clients under a command prefix (e.g. ``ip netns exec NS``).
    """
    chosen = parse_probes(probes)
    _check(duration_s, streams, samples)
    iperf.parse_rate(udp_rate)
    latency_port = latency_port or port + 1
    if "latency" in chosen:
        try:
            latency.check_bounds(latency_round_trips, latency_payload_bytes, latency_time_budget_s)
        except latency.LatencyError as exc:
            raise StepError(f"bad latency probe settings: {exc}") from None

    def one(probe: str):
        if probe == "latency":
            return latency.run_client_process(latency_host or server, latency_port, latency_round_trips,
                                              latency_payload_bytes, latency_time_budget_s,
                                              command_prefix=client_prefix)
        if probe == "udp":  # -b is per stream: one stream, so the rate is the rate on the path
            return iperf.run_udp_client(server, port, duration_s, udp_rate, 1, retries=retries,
                                        backoff_s=backoff_s, command_prefix=client_prefix)
        return iperf.run_client(server, port, duration_s, streams, reverse=probe == "tcp_reverse",
                                retries=retries, backoff_s=backoff_s, command_prefix=client_prefix)

    got: dict[str, list] = {p: [] for p in chosen}
    errors: dict[str, str] = {}
    for _ in range(samples):
        for probe in chosen:
            if probe in errors:
                continue
            try:
                got[probe].append(one(probe))
            except (iperf.IperfError, latency.LatencyError) as exc:
                errors[probe] = str(exc)
    if len(errors) == len(chosen):
        first = chosen[0]
        others = ", ".join(p for p in chosen[1:])
        raise StepError(f"every east-west probe failed; {first}: {errors[first]}"
                        + (f" (also failed: {others})" if others else ""))
    out: dict = {"errors": errors}
    for probe in chosen:
        if probe in errors:
            continue
        if probe == "latency":
            out[probe] = latency.summarize_samples(got[probe])
        elif probe == "udp":
            out[probe] = iperf.summarize_udp(got[probe], udp_rate)
        else:
            out[probe] = iperf.summarize_samples(got[probe])
    return out


def _settings(duration_s, streams, samples, chosen, udp_rate, latency_round_trips, latency_payload_bytes,
              latency_time_budget_s) -> dict:
    return {"duration_s": duration_s, "streams": streams, "samples": samples, "probes": list(chosen),
            "udp_rate": udp_rate if "udp" in chosen else None,
            "latency_settings": ({"round_trips": latency_round_trips, "payload_bytes": latency_payload_bytes,
                                  "time_budget_s": latency_time_budget_s} if "latency" in chosen else None)}


def run_local(duration_s: float = 3, streams: int = 1, samples: int = 3, port: int = 15201, *,
              probes: str | list[str] | tuple[str, ...] | None = None, udp_rate: str = DEFAULT_UDP_RATE,
              latency_port: int | None = None, latency_round_trips: int = 1000, latency_payload_bytes: int = 32,
              latency_time_budget_s: float = 5.0, path: str = "auto", retries: int = 3,
              backoff_s: float = 1.0) -> dict:
    """Local target: server and client on this machine.

    ``path="auto"``: between two network namespaces joined by a veth pair when running as root
    (``netns-veth``), else over loopback, and the result's ``path_reason`` says why. ``netns-veth``
    insists (StepError when it cannot be set up); ``loopback`` never tries namespaces.
    """
    if path not in LOCAL_PATHS:
        raise StepError(f"unknown local east-west path {path!r}: choose from {', '.join(LOCAL_PATHS)}")
    chosen = parse_probes(probes)
    _check(duration_s, streams, samples)
    iperf.parse_rate(udp_rate)
    latency_port = latency_port or port + 1
    if any(p in IPERF_PROBES for p in chosen):
        iperf.iperf3_path()

    reason = None
    if path == "loopback":
        reason = "loopback requested"
    else:
        reason = netns.unavailable_reason()
        if reason and path == "netns-veth":
            raise StepError(f"the netns-veth path is not available: {reason}")

    with ExitStack() as stack:
        pair = None
        if reason is None:
            try:
                pair = stack.enter_context(netns.veth_pair())
            except netns.NetnsError as exc:
                if path == "netns-veth":
                    raise StepError(f"the netns-veth path could not be set up: {exc}") from None
                reason = f"network namespaces could not be set up: {exc}"
        if pair is not None:
            used, server_addr = "netns-veth", pair.server_addr
            server_prefix, client_prefix = pair.exec_prefix("server"), pair.exec_prefix("client")
        else:
            used, server_addr, server_prefix, client_prefix = "loopback", "127.0.0.1", None, None
            if any(p in IPERF_PROBES for p in chosen):
                require_port_free(port, "the iperf3 server")
            if "latency" in chosen:
                require_port_free(latency_port, "the latency probe's echo server")
        # Servers stop before the namespaces go (ExitStack unwinds in reverse order).
        if any(p in IPERF_PROBES for p in chosen):
            server = iperf.start_server(port, server_addr, command_prefix=server_prefix)
            stack.callback(iperf.stop_process, server)
        if "latency" in chosen:
            try:
                echo = latency.start_server_process(server_addr, latency_port, command_prefix=server_prefix)
            except latency.LatencyError as exc:
                raise StepError(str(exc)) from None
            stack.callback(iperf.stop_process, echo)
        results = measure(server_addr, port, duration_s=duration_s, streams=streams, samples=samples,
                          probes=chosen, udp_rate=udp_rate, latency_port=latency_port,
                          latency_round_trips=latency_round_trips, latency_payload_bytes=latency_payload_bytes,
                          latency_time_budget_s=latency_time_budget_s, client_prefix=client_prefix,
                          retries=retries, backoff_s=backoff_s)
    host = socket.gethostname()
    # The local target is one machine by design: same-node is expected on both local paths and not
    # flagged (placement() exempts loopback; the netns path is loopback's two-host stand-in).
    data = placement(host, host, "loopback") | {"path": used, "path_reason": reason}
    if pair is not None:
        data["namespaces"] = pair.describe()
        if pair.cleanup_errors:
            data["flags"] = [*data["flags"], "netns_cleanup_failed"]
            data["cleanup_errors"] = pair.cleanup_errors
    data["flags"] = [*data["flags"], *(f"{p}_failed" for p in results["errors"])]
    return data | _settings(duration_s, streams, samples, chosen, udp_rate, latency_round_trips,
                            latency_payload_bytes, latency_time_budget_s) | results


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
