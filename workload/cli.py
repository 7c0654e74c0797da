"""The workload CLI: every benchmark step is a command that writes one JSON result document.

The same commands run as local processes (the local target) and inside pods (cluster targets).
A failure the user can act on prints one line, ``error: ...``, writes a document with
``ok: false`` and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from workload.errors import StepError, validation_summary
from workload.results import now_iso, result_document, write_document, write_result

CORPUS_DIR = Path(__file__).resolve().parent / "corpus" / "docs"


def _default_corpus() -> Path:
    """The corpus to ingest: $RAGBENCH_CORPUS_DIR/docs (the workload image's), else the package's."""
    value = os.environ.get("RAGBENCH_CORPUS_DIR")
    return Path(value) / "docs" if value else CORPUS_DIR


def _state_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("RAGBENCH_STATE_DIR") or ".state").resolve()


def cmd_build_model(args) -> dict:
    from workload.llm.tiny_model import build_tiny_model

    return {"model_dir": str(build_tiny_model(Path(args.model_dir), CORPUS_DIR))}


def cmd_deploy_local(args) -> dict:
    from workload.local.stack import LocalStack

    stack = LocalStack(_state_dir(args.state_dir), llm_port=args.llm_port, serve_port=args.serve_port)
    return stack.up(CORPUS_DIR)


def cmd_teardown_local(args) -> dict:
    from workload.local.stack import LocalStack

    return LocalStack(_state_dir(args.state_dir), llm_port=args.llm_port, serve_port=args.serve_port).down()


def cmd_deploy_cluster(args) -> dict:
    from workload import cluster

    return cluster.deploy_cluster(args.overlay, args.namespace, args.timeout, source_ranges=args.source_range,
                                  image=args.image, image_pull_secret=args.image_pull_secret,
                                  backend_url=args.backend_url, service=args.service)


def cmd_teardown_cluster(args) -> dict:
    from workload import cluster

    return cluster.teardown_cluster(args.overlay, args.namespace, args.timeout)


def cmd_ingest(args) -> dict:
    from workload.ingest_client import ingest_corpus

    return ingest_corpus(args.endpoint, Path(args.corpus), batch_size=args.batch_size,
                         token=os.environ.get("RAGBENCH_API_TOKEN"))


def _north_south_config(value: str | None):
    """NorthSouthConfig from the --config JSON (defaults without it); a bad one is a StepError."""
    from pydantic import ValidationError

    from workload.bench.northsouth import NorthSouthConfig

    try:
        return NorthSouthConfig.model_validate(json.loads(value)) if value else NorthSouthConfig()
    except ValueError as exc:  # bad JSON, or a ValidationError (a ValueError too)
        if isinstance(exc, ValidationError):
            raise StepError(f"bad --config: {validation_summary(exc)}") from None
        raise StepError(f"bad --config: not JSON ({exc})") from None


def _shard(value: str | None, start_at: float | None):
    """--shard I/N with --start-at EPOCH as a ShardSpec (None without --shard)."""
    from workload.bench.northsouth import ShardSpec

    if value is None:
        if start_at is not None:
            raise StepError("--start-at goes with --shard I/N")
        return None
    try:
        index, count = (int(x) for x in value.split("/"))
    except ValueError:
        raise StepError(f"bad --shard {value!r}: expected I/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise StepError(f"bad --shard {value!r}: I must be in 0..N-1")
    if start_at is None:
        raise StepError("--shard needs --start-at EPOCH: the shards start together at that instant")
    return ShardSpec(index, count, start_at)


def cmd_north_south(args) -> dict:
    from workload.bench.northsouth import run_north_south

    config = _north_south_config(args.config)
    shard = _shard(args.shard, args.start_at)
    if args.wait_ready > 0:  # e.g. a cloud load balancer still admitting its first targets
        from workload.cluster import wait_ready

        wait_ready(f"{args.endpoint.rstrip('/')}/readyz", args.wait_ready)
    from workload.telemetry.collect import run_with_telemetry

    # Telemetry per scenario: the observer is called around each scenario's measured part.
    data = run_with_telemetry(lambda obs: run_north_south(args.endpoint, config,
                                                          token=os.environ.get("RAGBENCH_API_TOKEN"),
                                                          observer=obs, workers=args.workers, shard=shard),
                              _telemetry_plan(args))
    if args.vantage:
        data["vantage"] = args.vantage
    return data


def cmd_browser_north_south(args) -> dict:
    from workload.browser.northsouth import run_browser_north_south

    config = _north_south_config(args.config)
    return run_browser_north_south(args.endpoint, config, args.requests, token=os.environ.get("RAGBENCH_API_TOKEN"))


def _telemetry_plan(args):
    """What the North-South step observes in each scenario's measured window (docs/telemetry.md):
    the local stack's processes and vLLM's /metrics when that stack runs from the state folder,
    vLLM's /metrics at --llm-metrics-url, and the cluster's Prometheus at --prometheus-url."""
    from workload.telemetry.collect import TelemetryPlan
    from workload.telemetry.prometheus import PrometheusConfig

    if args.no_telemetry:
        return TelemetryPlan()
    plan = TelemetryPlan(interval_s=args.sample_interval, llm_metrics_url=args.llm_metrics_url)
    if args.prometheus_url:
        plan.prometheus = PrometheusConfig(args.prometheus_url, namespace=args.prometheus_namespace,
                                           step_s=args.prometheus_step, settle_s=args.prometheus_settle,
                                           scrape_interval_s=args.prometheus_scrape_interval)
    if args.state_dir or os.environ.get("RAGBENCH_STATE_DIR"):
        from workload.local.stack import LocalStack

        found = LocalStack(_state_dir(args.state_dir)).telemetry_roots()
        plan.process_roots, plan.process_extra = found["roots"], found["extra"]
        plan.llm_metrics_url = plan.llm_metrics_url or found["llm_metrics_url"]
    return plan


def cmd_east_west(args) -> dict:
    from workload.eastwest import probe

    if args.server:
        server_node = args.server_node or ""
        if not server_node and args.server_selector:  # a cluster: ask the API where the server runs
            from workload import cluster

            server_node = cluster.pod_node(cluster.Kubectl(), args.server_selector, args.namespace)
        return probe.run_remote(args.server, args.port, args.duration, args.streams, args.samples,
                                client_node=args.client_node or os.environ.get("NODE_NAME", ""),
                                server_node=server_node)
    return probe.run_local(args.duration, args.streams, args.samples, port=args.port, probes=args.probes,
                           udp_rate=args.udp_rate, latency_port=args.latency_port,
                           latency_round_trips=args.latency_round_trips,
                           latency_payload_bytes=args.latency_payload_bytes,
                           latency_time_budget_s=args.latency_time_budget, path=args.local_path)


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1")
    return number


def _workers(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 64:
        raise argparse.ArgumentTypeError(f"{value} is not in 0..64")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ragbench-workload", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def step(name: str, fn, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_)
        p.add_argument("--out", default="-", help="where to write the result document (- = stdout)")
        p.add_argument("--results-store", metavar="URL",
                       help="write the document to URL/<step>.json (any fsspec URL: s3://, gs://, file://) "
                            "and only a reference to it to --out")
        p.set_defaults(fn=fn, step=name)
        return p

    p = step("build-model", cmd_build_model, "build the tiny local model (cached)")
    p.add_argument("--model-dir", required=True)

    for name, fn, help_ in (("deploy-local", cmd_deploy_local, "start vLLM and the RAG service locally"),
                            ("teardown-local", cmd_teardown_local, "stop the local processes")):
        p = step(name, fn, help_)
        p.add_argument("--state-dir")
        p.add_argument("--llm-port", type=int, default=int(os.environ.get("RAGBENCH_LLM_PORT", 18100)))
        p.add_argument("--serve-port", type=int, default=int(os.environ.get("RAGBENCH_SERVE_PORT", 18000)))

    from workload.cluster import BACKEND_SERVICE, IN_CLUSTER_BACKEND_URL

    namespace = os.environ.get("POD_NAMESPACE") or "ragbench"
    p = step("deploy-cluster", cmd_deploy_cluster,
             "kubectl apply -k an overlay; wait for the rollouts, the load balancer and /readyz")
    p.add_argument("--overlay", required=True, help="e.g. k8s/overlays/aws-eks (read under $RAGBENCH_K8S_DIR)")
    p.add_argument("--namespace", default=namespace)
    p.add_argument("--timeout", type=float, default=1800, help="seconds for the whole deploy")
    p.add_argument("--backend-url", default=IN_CLUSTER_BACKEND_URL,
                   help="the backend as this pod reaches it, for the /readyz wait")
    p.add_argument("--service", default=BACKEND_SERVICE, help="the LoadBalancer Service (public endpoint)")
    p.add_argument("--source-range", action="append", default=[], metavar="CIDR",
                   help="who may reach the load balancer (repeat; required: the backend is closed by default)")
    p.add_argument("--image", help="the workload image the Ray and iperf3 pods run (default: the manifests' release)")
    p.add_argument("--image-pull-secret", help="a Secret in the namespace to pull --image with")

    p = step("teardown-cluster", cmd_teardown_cluster, "kubectl delete -k an overlay")
    p.add_argument("--overlay", required=True)
    p.add_argument("--namespace", default=namespace)
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the deletions")

    p = step("ingest", cmd_ingest, "post the corpus to /ingest")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--corpus", default=str(_default_corpus()))
    p.add_argument("--batch-size", type=int, default=8)

    p = step("north-south", cmd_north_south, "streaming load against the endpoint")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--config", help="NorthSouthConfig as JSON")
    p.add_argument("--wait-ready", type=float, default=0, metavar="SECONDS",
                   help="first wait up to this long for the endpoint's /readyz (default: do not wait)")
    p.add_argument("--vantage", help="where the load comes from, recorded with the results (e.g. cluster)")
    p.add_argument("--workers", type=_workers, metavar="N",
                   help="load generator processes sharing the schedule (overrides the config's workers; "
                        "0 = as many as the offered load needs)")
    p.add_argument("--shard", metavar="I/N", help="run only shard I of N of the schedule (client pods; "
                   "merge the shards' documents with workload.bench.merge)")
    p.add_argument("--start-at", type=float, metavar="EPOCH",
                   help="with --shard: warm up, then start the measured load at this wall-clock time "
                        "(epoch seconds; the same for every shard)")
    p.add_argument("--state-dir", help="the local stack's state folder (default: $RAGBENCH_STATE_DIR): "
                   "sample its processes and vLLM's /metrics while the load runs")
    p.add_argument("--sample-interval", type=float, default=0.5, metavar="SECONDS",
                   help="process sampling interval (local stack)")
    p.add_argument("--llm-metrics-url", help="vLLM's /metrics, scraped before and after each scenario")
    p.add_argument("--prometheus-url", help="the cluster's Prometheus: GPU, CPU and memory per scenario")
    p.add_argument("--prometheus-namespace", default=namespace, help="the workload's namespace there")
    p.add_argument("--prometheus-step", type=float, default=1.0, metavar="SECONDS",
                   help="finest resolution of the Prometheus range queries (a scenario's window "
                        "is split into at most 30 points)")
    p.add_argument("--prometheus-scrape-interval", type=float, default=15.0, metavar="SECONDS",
                   help="the Prometheus's scrape interval: rate() looks back at least two of them")
    p.add_argument("--prometheus-settle", type=float, default=15.0, metavar="SECONDS",
                   help="wait after the last scenario before querying, so the last scrape of its window is in")
    p.add_argument("--no-telemetry", action="store_true", help="observe nothing, only run the load")

    p = step("browser-north-south", cmd_browser_north_south,
             "questions asked through the service's chat page in headless Chromium (the browser vantage point)")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--requests", type=_positive_int, required=True, help="measured questions, asked one at a time")
    p.add_argument("--config", help="NorthSouthConfig as JSON: warm-up, max_tokens, k, ignore_eos, SLOs, timeouts "
                   "(its strategy and max_requests do not apply)")

    p = step("east-west", cmd_east_west, "iperf3 throughput between two hosts")
    p.add_argument("--server", help="iperf3 server address (default: a local server on loopback)")
    p.add_argument("--port", type=int, default=15201)
    p.add_argument("--duration", type=float, default=3)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--client-node", help="default: $NODE_NAME (the downward API in a pod)")
    p.add_argument("--server-node")
    p.add_argument("--server-selector", help="label selector of the server pod, to look up its node with kubectl")
    p.add_argument("--namespace", default=namespace, help="the server pod's namespace (with --server-selector)")
    p.add_argument("--probes", default="tcp,tcp_reverse,udp,latency",
                   help="comma-separated: tcp, tcp_reverse, udp, latency (local target)")
    p.add_argument("--udp-rate", default="100M", help="iperf3 -b for the UDP probe (bit/s, K/M/G suffix)")
    p.add_argument("--latency-port", type=int, help="echo server port of the latency probe (default: --port + 1)")
    p.add_argument("--latency-round-trips", type=int, default=1000)
    p.add_argument("--latency-payload-bytes", type=int, default=32)
    p.add_argument("--latency-time-budget", type=float, default=5.0, metavar="SECONDS")
    p.add_argument("--local-path", choices=["auto", "netns-veth", "loopback"], default="auto",
                   help="auto: two network namespaces joined by a veth pair when root, else loopback")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = now_iso()
    try:
        data = args.fn(args)
    except StepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _write(result_document(args.step, {}, started_at=started, ok=False, error=str(exc)), args, 1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return _write(result_document(args.step, data, started_at=started), args, 0)


def _write(doc: dict, args, rc: int) -> int:
    """Write the step's output (``rc`` is the step's exit code). A results store that cannot be
    written fails the step with one line, and --out gets a failed document that says why."""
    try:
        write_result(doc, args.out, args.results_store)
    except Exception as exc:  # fsspec: a missing protocol package, credentials, the network
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        error = f"could not write the result document to {args.results_store}: {reason}"
        print(f"error: {error}", file=sys.stderr)
        write_document(result_document(args.step, {}, started_at=doc["started_at"], ok=False, error=error), args.out)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
