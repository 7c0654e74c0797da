"""Run the RAG service on a private, single-node Ray instance bound to 127.0.0.1.

Started by the local stack as a managed process; SIGTERM shuts Serve and Ray down cleanly.

The replica serves HTTP itself on ``--port`` (Ray Serve's direct ingress): requests and tokens do
not cross the Python proxy actor, which on a 2-core machine cost ~11 ms of TTFT and a share of the
core that streams tokens. Ray still starts its proxy; it gets a spare port nobody is told about.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading

from workload.local.processes import free_port


def serve_env(port: int) -> dict[str, str]:
    """Ray Serve settings for a single local replica that owns ``port`` (read when Ray is imported,
    and inherited by the replica's worker process)."""
    return {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(port),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(port + 1),  # exclusive: only ``port``
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "0",  # nothing to drain to on one node
    }


def replica_port_is_reusable() -> None:
    """Worker set-up hook: the replica's listening socket gets SO_REUSEADDR/SO_REUSEPORT, as Ray
    gives its proxy's. Without them, connections the replica closes at shutdown leave the port in
    TIME_WAIT, and a service restarted on the same port within a minute cannot bind it. Ray Serve
    2.60 passes ``enable_so_reuseport=False`` for replicas, with no setting to change it."""
    from ray.serve._private import replica

    start = replica.start_asgi_http_server

    async def start_reusable(app, http_options, *, event_loop, enable_so_reuseport=False):
        return await start(app, http_options, event_loop=event_loop, enable_so_reuseport=True)

    replica.start_asgi_http_server = start_reusable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--settings", required=True, help="JSON object of ServiceSettings")
    parser.add_argument("--ray-temp-dir", required=True)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()

    for key, value in serve_env(args.port).items():
        os.environ.setdefault(key, value)
    import ray
    from ray import serve

    from workload.service.app import build_app

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, _temp_dir=args.ray_temp_dir,
             _node_ip_address="127.0.0.1", log_to_driver=True, configure_logging=False,
             runtime_env={"worker_process_setup_hook": f"{__spec__.name}.replica_port_is_reusable"})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port(avoid={args.port})})
        serve.run(build_app(json.loads(args.settings)), name="ragbench", route_prefix="/")
        print(f"ragbench service listening on http://127.0.0.1:{args.port}", flush=True)
        stop.wait()
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
