"""Load step result documents into the results database, idempotently.

Each document is loaded in one transaction that first deletes what an earlier attempt of the same
(target run, step) wrote, so a retried or re-run load never duplicates or half-writes. Raw
north-south records go in with COPY.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ragbench.errors import RagbenchError
from workload.bench.records import RequestRecord

SCHEMA = "ragbench.result/v1"


def _ts(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))


def record_run(engine: Engine, run_id: str, dag_id: str, started_at: Any, run_type: str | None,
               params: dict, git_revision: str | None) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO runs (run_id, dag_id, started_at, run_type, params, git_revision) "
            "VALUES (:r, :d, :s, :t, CAST(:p AS jsonb), :g) "
            "ON CONFLICT (run_id) DO UPDATE SET params = EXCLUDED.params, git_revision = EXCLUDED.git_revision"),
            {"r": run_id, "d": dag_id, "s": _ts(started_at), "t": run_type, "p": json.dumps(params),
             "g": git_revision})


def finish_run(engine: Engine, run_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE runs SET finished_at = now() WHERE run_id = :r"), {"r": run_id})


def upsert_target_run(engine: Engine, run_id: str, target: str, kind: str, provider: str,
                      region: str | None, model_id: str | None, fingerprint: dict, started_at: Any) -> int:
    with engine.begin() as conn:
        return conn.execute(sa.text(
            "INSERT INTO target_runs (run_id, target, kind, provider, region, model_id, fingerprint, started_at) "
            "VALUES (:r, :t, :k, :p, :reg, :m, CAST(:f AS jsonb), :s) "
            "ON CONFLICT (run_id, target) DO UPDATE SET kind = EXCLUDED.kind, provider = EXCLUDED.provider, "
            " region = EXCLUDED.region, model_id = COALESCE(EXCLUDED.model_id, target_runs.model_id), "
            " fingerprint = target_runs.fingerprint || EXCLUDED.fingerprint "
            "RETURNING target_run_id"),
            {"r": run_id, "t": target, "k": kind, "p": provider, "reg": region, "m": model_id,
             "f": json.dumps(fingerprint), "s": _ts(started_at)}).scalar_one()


def finish_target_run(engine: Engine, target_run_id: int, failed_steps: list[str], error: str | None) -> None:
    status = "failed" if failed_steps else "succeeded"
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE target_runs SET status = :s, failed_steps = :f, error = :e, finished_at = now() "
            "WHERE target_run_id = :id"),
            {"s": status, "f": failed_steps, "e": error, "id": target_run_id})


def load_document(engine: Engine, target_run_id: int, doc: dict) -> str:
    """Load one step document; returns the step name. Documents of failed steps load nothing."""
    if doc.get("schema") != SCHEMA:
        raise RagbenchError(f"unknown result document schema {doc.get('schema')!r} (expected {SCHEMA})")
    step = doc["step"]
    if not doc.get("ok"):
        return step
    loaders = {"ingest": _load_ingest, "north-south": _load_north_south, "east-west": _load_east_west,
               "deploy-local": _load_deploy, "deploy-cluster": _load_deploy,
               "browser-north-south": _load_browser_north_south}
    fn = loaders.get(step)
    if fn is None:
        return step  # teardown and other steps have nothing to store
    with engine.begin() as conn:
        fn(conn, target_run_id, doc["data"])
    return step


def _load_deploy(conn: Connection, trid: int, data: dict) -> None:
    fingerprint = {k: data[k] for k in ("endpoint", "model_id", "timings", "images", "kubernetes_version",
                                        "node_types") if k in data}
    conn.execute(sa.text(
        "UPDATE target_runs SET fingerprint = fingerprint || CAST(:f AS jsonb), "
        "model_id = COALESCE(:m, model_id) WHERE target_run_id = :id"),
        {"f": json.dumps({"deploy": fingerprint}), "m": data.get("model_id"), "id": trid})


def _load_ingest(conn: Connection, trid: int, data: dict) -> None:
    conn.execute(sa.text("DELETE FROM ingest_results WHERE target_run_id = :id"), {"id": trid})
    stage = data.get("stage_ms") or {}
    corpus = data.get("corpus") or {}  # older documents have none: NULL columns
    conn.execute(sa.text(
        "INSERT INTO ingest_results (target_run_id, files, documents, chunks, bytes, seconds, chunks_per_s, "
        " convert_split_ms, embed_ms, write_ms, store_documents, corpus_version, corpus_sha256, "
        " corpus_documents, corpus_bytes) "
        "VALUES (:id, :files, :docs, :chunks, :bytes, :secs, :cps, :cs, :em, :wr, :sd, :cv, :csha, :cdocs, :cbytes)"),
        {"id": trid, "files": data["files"], "docs": data["documents"], "chunks": data["chunks"],
         "bytes": data["bytes"], "secs": data["seconds"], "cps": data.get("chunks_per_s"),
         "cs": stage.get("convert_split_ms"), "em": stage.get("embed_ms"), "wr": stage.get("write_ms"),
         "sd": data.get("store_documents"), "cv": corpus.get("version"), "csha": corpus.get("sha256"),
         "cdocs": corpus.get("documents"), "cbytes": corpus.get("bytes")})


def _load_east_west(conn: Connection, trid: int, data: dict) -> None:
    """One ew_results row per probe (tcp, tcp_reverse, udp, latency); a failed probe is a row with
    ``error`` set, samples 0 and no figures. Documents of older workloads (tcp rows only) load too."""
    columns = ("target_run_id", "probe", "client_node", "server_node", "cross_node", "path", "path_reason", "flags",
               "samples", "throughput_gbps", "throughput_ci95_low_gbps", "throughput_ci95_high_gbps", "retransmits",
               "mean_rtt_ms", "jitter_ms", "loss_pct", "lost_packets", "packets", "target_rate_bps",
               "latency_p50_ms", "latency_p50_ci95_low_ms", "latency_p50_ci95_high_ms", "latency_p99_ms",
               "latency_p99_ci95_low_ms", "latency_p99_ci95_high_ms", "round_trips", "error", "detail")
    conn.execute(sa.text("DELETE FROM ew_results WHERE target_run_id = :id"), {"id": trid})
    errors = data.get("errors") or {}

    def stat(summary: dict, key: str, field: str = "mean"):
        return (summary.get(key) or {}).get(field)

    for probe in ("tcp", "tcp_reverse", "udp", "latency"):
        result, error = data.get(probe), errors.get(probe)
        if not result and not error:
            continue
        row = dict.fromkeys(columns)
        row.update({"target_run_id": trid, "probe": probe, "client_node": data["client_node"],
                    "server_node": data["server_node"], "cross_node": data["cross_node"], "path": data["path"],
                    "path_reason": data.get("path_reason"), "flags": data.get("flags", [])})
        if not result:
            row.update({"samples": 0, "error": str(error), "detail": json.dumps({"error": error})})
        elif probe == "latency":
            row.update({"samples": stat(result, "p50_ms", "n") or 0,
                        "latency_p50_ms": stat(result, "p50_ms"),
                        "latency_p50_ci95_low_ms": stat(result, "p50_ms", "ci95_low"),
                        "latency_p50_ci95_high_ms": stat(result, "p50_ms", "ci95_high"),
                        "latency_p99_ms": stat(result, "p99_ms"),
                        "latency_p99_ci95_low_ms": stat(result, "p99_ms", "ci95_low"),
                        "latency_p99_ci95_high_ms": stat(result, "p99_ms", "ci95_high"),
                        "round_trips": result.get("round_trips")})
        else:
            tput = result["throughput_gbps"]
            row.update({"samples": tput["n"], "throughput_gbps": tput["mean"], "throughput_ci95_low_gbps":
                        tput["ci95_low"], "throughput_ci95_high_gbps": tput["ci95_high"],
                        "retransmits": stat(result, "retransmits"), "mean_rtt_ms": stat(result, "mean_rtt_ms"),
                        "jitter_ms": stat(result, "jitter_ms"), "loss_pct": stat(result, "loss_pct")})
            if probe == "udp":
                row.update({"lost_packets": result.get("lost_packets"), "packets": result.get("packets"),
                            "target_rate_bps": result.get("target_rate_bps")})
        if result:
            row["detail"] = json.dumps(result)
        conn.execute(sa.text(
            f"INSERT INTO ew_results ({', '.join(columns)}) VALUES "
            f"({', '.join(':' + c for c in columns[:-1])}, CAST(:detail AS jsonb))"), row)


_DIST_COLUMNS = {
    "ttft": "ttft_ms", "e2e": "e2e_ms", "tpot": "tpot_ms", "itl": "itl_ms",
}


def _load_north_south(conn: Connection, trid: int, data: dict) -> None:
    conn.execute(sa.text("DELETE FROM ns_requests WHERE target_run_id = :id"), {"id": trid})
    conn.execute(sa.text("DELETE FROM ns_summaries WHERE target_run_id = :id"), {"id": trid})
    _insert_scenarios(conn, trid, data)
    _load_resources(conn, trid, data.get("resources"))
    _load_server_histograms(conn, trid, data.get("server_histograms"))


def _load_browser_north_south(conn: Connection, trid: int, data: dict) -> None:
    """The browser vantage point (workload/browser): its scenario goes in next to the load generator's.
    It replaces only its own scenarios and is never the headline, whatever the document says. It is
    loaded after the North-South document, whose load first clears every scenario of the target run."""
    names = [sc["scenario"] for sc in data["scenarios"]]
    for table in ("ns_requests", "ns_summaries"):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE target_run_id = :id AND scenario = ANY(:names)"),
                     {"id": trid, "names": names})
    _insert_scenarios(conn, trid, data, headline=False)


def _insert_scenarios(conn: Connection, trid: int, data: dict, headline: bool | None = None) -> None:
    """ns_summaries and ns_requests rows of each scenario; ``headline`` overrides the documents' flags."""
    for i, sc in enumerate(data["scenarios"]):
        s = sc["summary"]
        flag = sc.get("headline", i == 0) if headline is None else headline
        row = {"id": trid, "scenario": sc["scenario"], "headline": flag,
               "started_at": _ts(sc["started_at_epoch"]),
               "strategy": json.dumps(sc.get("strategy") or data["config"]["strategy"]),
               "requests": s["requests"], "completed": s["completed"], "errored": s["errored"],
               "error_rate": s["error_rate"], "wall": s["wall_time_s"], "out": s["output_tokens"],
               "tps": s["output_tokens_per_s"], "rps": s["requests_per_s"],
               "slo": s.get("slo_attainment"), "goodput": s.get("goodput_rps"), "valid": s["valid"],
               "invalid_reason": s.get("invalid_reason"), "summary": json.dumps(s)}
        cols = []
        for prefix, key in _DIST_COLUMNS.items():
            for stat in ("p50", "p90", "p95", "p99", "mean"):
                col = f"{prefix}_{stat}_ms"
                cols.append(col)
                row[col] = s[key][stat]
        conn.execute(sa.text(
            "INSERT INTO ns_summaries (target_run_id, scenario, headline, started_at, strategy, requests, "
            " completed, errored, error_rate, wall_time_s, output_tokens, output_tokens_per_s, requests_per_s, "
            " slo_attainment, goodput_rps, valid, invalid_reason, summary, " + ", ".join(cols) + ") "
            "VALUES (:id, :scenario, :headline, :started_at, CAST(:strategy AS jsonb), :requests, :completed, "
            " :errored, :error_rate, :wall, :out, :tps, :rps, :slo, :goodput, :valid, :invalid_reason, "
            " CAST(:summary AS jsonb), " + ", ".join(f":{c}" for c in cols) + ")"), row)
        _copy_records(conn, trid, sc["scenario"], sc["records"])


def _load_resources(conn: Connection, trid: int, resources: dict | None) -> None:
    """resource_usage rows of the North-South step's telemetry (docs/telemetry.md)."""
    conn.execute(sa.text("DELETE FROM resource_usage WHERE target_run_id = :id"), {"id": trid})
    if not resources or not resources.get("rows"):
        return
    window = resources.get("window") or {}
    rows = [{"id": trid, "source": r["source"], "component": r["component"], "metric": r["metric"],
             "unit": r["unit"], "min": r.get("min"), "mean": r.get("mean"), "max": r.get("max"),
             "samples": r.get("samples") or 0, "ws": _ts(window.get("start_epoch")),
             "we": _ts(window.get("end_epoch"))} for r in resources["rows"]]
    conn.execute(sa.text(
        "INSERT INTO resource_usage (target_run_id, source, component, metric, unit, min_value, mean_value, "
        " max_value, samples, window_start, window_end) "
        "VALUES (:id, :source, :component, :metric, :unit, :min, :mean, :max, :samples, :ws, :we)"), rows)


def _load_server_histograms(conn: Connection, trid: int, section: dict | None) -> None:
    """server_histograms rows: vLLM's histograms over the step (difference of two scrapes)."""
    conn.execute(sa.text("DELETE FROM server_histograms WHERE target_run_id = :id"), {"id": trid})
    metrics = (section or {}).get("metrics") or {}
    rows = [{"id": trid, "metric": h["metric"], "kind": kind, "unit": h.get("unit", "seconds"),
             "buckets": json.dumps(h["buckets"]), "sum": h["sum"], "count": h["count"], "mean": h.get("mean_ms"),
             "p50": h.get("p50_ms"), "p90": h.get("p90_ms"), "p95": h.get("p95_ms"), "p99": h.get("p99_ms"),
             "url": section.get("url")} for kind, h in metrics.items()]
    if rows:
        conn.execute(sa.text(
            "INSERT INTO server_histograms (target_run_id, metric, kind, unit, buckets, sum, count, mean_ms, "
            " p50_ms, p90_ms, p95_ms, p99_ms, source_url) "
            "VALUES (:id, :metric, :kind, :unit, CAST(:buckets AS jsonb), :sum, :count, :mean, :p50, :p90, "
            " :p95, :p99, :url)"), rows)


# ns_requests columns and their types: binary COPY needs the types, and is several times faster than
# text COPY for the float arrays (benchmarks/store_load.py).
_RECORD_TYPES = {
    "target_run_id": "bigint", "scenario": "text", "idx": "integer", "warmup": "boolean", "prompt_id": "text",
    "t_scheduled_ms": "float8", "t_sent_ms": "float8", "t_first_byte_ms": "float8", "t_first_token_ms": "float8",
    "t_end_ms": "float8", "ttft_ms": "float8", "e2e_ms": "float8", "tpot_ms": "float8", "output_tokens": "integer",
    "output_tokens_source": "text", "token_events": "integer", "http_status": "integer", "request_id": "text",
    "replica_id": "text", "error_code": "text", "server_error_code": "text", "error_message": "text",
    "itl_ms": "float8[]", "server_timings": "jsonb",
}
_RECORD_COLUMNS = tuple(_RECORD_TYPES)


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def record_row(trid: int, scenario: str, r: dict) -> tuple:
    """One raw record as a database row; the derived figures follow docs/metrics.md."""
    rec = RequestRecord.from_dict(r)
    ok = rec.ok
    return (trid, scenario, rec.index, rec.warmup, rec.prompt_id, _ms(rec.t_scheduled), _ms(rec.t_sent),
            _ms(rec.t_first_byte), _ms(rec.t_first_token), _ms(rec.t_end),
            rec.ttft_ms if ok else None, rec.e2e_ms, rec.tpot_ms if ok else None,
            rec.n_out if ok else None, rec.output_tokens_source, len(rec.token_times), rec.http_status,
            rec.request_id, rec.replica_id, rec.error_code, rec.server_error_code, rec.error_message,
            rec.itl_ms, rec.server_timings or {})  # a dict: the binary jsonb dumper encodes it


def _copy_records(conn: Connection, trid: int, scenario: str, records: list[dict]) -> None:
    raw = conn.connection.driver_connection  # psycopg 3 connection, inside this transaction
    with raw.cursor() as cur:
        with cur.copy(f"COPY ns_requests ({', '.join(_RECORD_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(_RECORD_TYPES.values()))
            for r in records:
                copy.write_row(record_row(trid, scenario, r))
