"""Run the RAG service on a private, single-node Ray instance bound to 127.0.0.1.

Started by the local stack as a managed process; SIGTERM shuts Serve and Ray down cleanly.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--settings", required=True, help="JSON object of ServiceSettings")
    parser.add_argument("--ray-temp-dir", required=True)
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()

    import ray
    from ray import serve

    from workload.service.app import build_app

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    ray.init(num_cpus=args.num_cpus, include_dashboard=False, _temp_dir=args.ray_temp_dir,
             _node_ip_address="127.0.0.1", log_to_driver=True, configure_logging=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
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
