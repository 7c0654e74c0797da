"""Load step result documents into the results database, idempotently.

Each document is loaded in one transaction that first deletes every row an earlier attempt of the
same (target run, step) wrote, whether the new attempt succeeded or failed, so a retried or re-run
load never duplicates, half-writes or leaves a stale result next to a failure. ``step_results``
records each step's outcome and its own start and end. Raw north-south records go in with COPY;
the headline figures' bootstrap intervals are computed from them on the way (intervals.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ragbench import intervals, run_prices
from ragbench.errors import RagbenchError
from ragbench.steps import STEPS
from workload.bench.records import RequestRecord
from workload.bench.summary import NorthSouthSummary

SCHEMA = "ragbench.result/v1"

# A document's step (the workload command that wrote it) -> the pipeline's step name.
STEP_OF_DOCUMENT = {cmd: s.name for s in STEPS for cmd in (s.local_command, s.cluster_command) if cmd}
# The rows each step's documents write: a new attempt of the step replaces all of them (deploy writes
# the "deploy" key of target_runs.fingerprint instead).
STEP_TABLES = {
    "ingest": ("ingest_results",),
    "north_south": ("ns_requests", "ns_summaries", "resource_usage", "server_histograms"),
    "east_west": ("ew_results",),
}


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
    """Record the target run's verdict and freeze its price (the first load's price stays; see
    run_prices)."""
    status = "failed" if failed_steps else "succeeded"
    with engine.begin() as conn:
        conn.execute(sa.text(
            "UPDATE target_runs SET status = :s, failed_steps = :f, error = :e, finished_at = now() "
            "WHERE target_run_id = :id"),
            {"s": status, "f": failed_steps, "e": error, "id": target_run_id})
        run_prices.freeze(conn, target_run_id)


def _clear_step(conn: Connection, trid: int, step: str) -> None:
    for table in STEP_TABLES.get(step, ()):
        conn.execute(sa.text(f"DELETE FROM {table} WHERE target_run_id = :id"), {"id": trid})
    if step == "deploy":
        conn.execute(sa.text("UPDATE target_runs SET fingerprint = fingerprint - 'deploy' WHERE target_run_id = :id"),
                     {"id": trid})


def clear_step(engine: Engine, target_run_id: int, step: str) -> None:
    """A step without a document in this attempt (it never ran, or its task left nothing): delete
    what an earlier attempt of it wrote, so no stale result outlives the step that produced it."""
    with engine.begin() as conn:
        _clear_step(conn, target_run_id, step)
        conn.execute(sa.text("DELETE FROM step_results WHERE target_run_id = :id AND step = :s"),
                     {"id": target_run_id, "s": step})


def load_document(engine: Engine, target_run_id: int, doc: dict) -> str:
    """Load one step document, replacing everything an earlier attempt of the step wrote; returns
    the document's step. A failed step's document stores its outcome and nothing else."""
    if doc.get("schema") != SCHEMA:
        raise RagbenchError(f"unknown result document schema {doc.get('schema')!r} (expected {SCHEMA})")
    step = doc["step"]
    name = STEP_OF_DOCUMENT.get(step, step)
    loaders = {"ingest": _load_ingest, "north_south": _load_north_south, "east_west": _load_east_west,
               "deploy": _load_deploy, "browser_north_south": _load_browser_north_south}
    with engine.begin() as conn:
        _clear_step(conn, target_run_id, name)
        conn.execute(sa.text(
            "INSERT INTO step_results (target_run_id, step, ok, error, started_at, finished_at, host) "
            "VALUES (:id, :s, :ok, :e, :start, :end, :host) ON CONFLICT (target_run_id, step) DO UPDATE SET "
            " ok = EXCLUDED.ok, error = EXCLUDED.error, started_at = EXCLUDED.started_at, "
            " finished_at = EXCLUDED.finished_at, host = EXCLUDED.host"),
            {"id": target_run_id, "s": name, "ok": bool(doc.get("ok")), "e": doc.get("error"),
             "start": _ts(doc.get("started_at")), "end": _ts(doc.get("finished_at")), "host": doc.get("host")})
        fn = loaders.get(name)
        if doc.get("ok") and fn is not None:  # teardown and other steps have nothing more to store
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
    ``error`` set, samples 0 and no figures. Documents of older workloads (tcp rows only) load too.
    Latency percentiles and UDP loss are pooled over the samples (``value``, docs/metrics.md);
    documents written before pooling carry means of per-sample figures (``mean``) instead."""
    columns = ("target_run_id", "probe", "client_node", "server_node", "cross_node", "path", "path_reason", "flags",
               "samples", "throughput_gbps", "throughput_ci95_low_gbps", "throughput_ci95_high_gbps", "retransmits",
               "mean_rtt_ms", "jitter_ms", "loss_pct", "lost_packets", "packets", "target_rate_bps",
               "latency_p50_ms", "latency_p50_ci95_low_ms", "latency_p50_ci95_high_ms", "latency_p99_ms",
               "latency_p99_ci95_low_ms", "latency_p99_ci95_high_ms", "round_trips", "error", "detail")
    conn.execute(sa.text("DELETE FROM ew_results WHERE target_run_id = :id"), {"id": trid})
    errors = data.get("errors") or {}

    def stat(summary: dict, key: str, field: str = "mean"):
        figure = summary.get(key) or {}
        if field == "mean" and "value" in figure:  # pooled over samples
            return figure["value"]
        return figure.get(field)

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
    _insert_scenarios(conn, trid, data)
    _load_resources(conn, trid, data)
    _load_server_histograms(conn, trid, data)


def _summary(scenario: dict) -> dict:
    """A scenario's summary, checked against the load generator's own type (workload.bench.summary)
    before anything of it is stored: a malformed document fails its load with the field at fault."""
    from pydantic import ValidationError

    try:
        NorthSouthSummary.model_validate(scenario["summary"])
    except ValidationError as exc:
        from workload.errors import validation_summary

        raise RagbenchError(f"scenario {scenario.get('scenario')!r}: bad summary: {validation_summary(exc)}") from None
    return scenario["summary"]


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
        s = _summary(sc)
        flag = sc.get("headline", i == 0) if headline is None else headline
        samples = _copy_records(conn, trid, sc["scenario"], sc["records"])
        row = {"id": trid, "scenario": sc["scenario"], "headline": flag,
               "started_at": _ts(sc["started_at_epoch"]),
               "strategy": json.dumps(sc.get("strategy") or data["config"]["strategy"]),
               "requests": s["requests"], "completed": s["completed"], "errored": s["errored"],
               "error_rate": s["error_rate"], "wall": s["wall_time_s"], "out": s["output_tokens"],
               "tps": s["output_tokens_per_s"], "rps": s["requests_per_s"],
               "slo": s.get("slo_attainment"), "goodput": s.get("goodput_rps"), "valid": s["valid"],
               "invalid_reason": s.get("invalid_reason"), "summary": json.dumps(s),
               "operating_point": _operating_point(sc),
               "prefix_cache_hit_rate": (sc.get("prefix_cache") or {}).get("hit_rate"),
               "low_confidence": intervals.low_confidence_columns(s)}
        row.update(intervals.headline_intervals(*samples, s["wall_time_s"]))
        cols = []
        for prefix, key in _DIST_COLUMNS.items():
            for stat in ("p50", "p90", "p95", "p99", "mean"):
                col = f"{prefix}_{stat}_ms"
                cols.append(col)
                row[col] = s[key][stat]
        cols += [c for c in row if c.endswith(("_lo", "_hi"))]
        conn.execute(sa.text(
            "INSERT INTO ns_summaries (target_run_id, scenario, headline, started_at, strategy, requests, "
            " completed, errored, error_rate, wall_time_s, output_tokens, output_tokens_per_s, requests_per_s, "
            " slo_attainment, goodput_rps, valid, invalid_reason, summary, operating_point, prefix_cache_hit_rate, "
            " low_confidence, " + ", ".join(cols) + ") "
            "VALUES (:id, :scenario, :headline, :started_at, CAST(:strategy AS jsonb), :requests, :completed, "
            " :errored, :error_rate, :wall, :out, :tps, :rps, :slo, :goodput, :valid, :invalid_reason, "
            " CAST(:summary AS jsonb), :operating_point, :prefix_cache_hit_rate, :low_confidence, "
            + ", ".join(f":{c}" for c in cols) + ")"), row)


def _operating_point(sc: dict) -> bool | None:
    """The load generator's operating-point flag (NULL outside sweeps). Documents written before it
    existed: a sweep level (its summary says whether it met the SLO target) is the operating point
    when it is the headline and met the target. An invalid scenario is never the operating point."""
    summary = sc["summary"]
    if "operating_point" in sc:
        flag = sc["operating_point"]
    elif summary.get("meets_slo_target") is not None:
        flag = bool(sc.get("headline") and summary["meets_slo_target"])
    else:
        flag = None
    return None if flag is None else bool(flag) and bool(summary["valid"])


def _telemetry_windows(data: dict, key: str) -> list[tuple[str | None, dict]]:
    """(scenario, section) for every scenario document carrying section ``key``; a document written
    before per-scenario telemetry has one step-wide section instead (scenario None)."""
    found = [(sc["scenario"], sc[key]) for sc in data.get("scenarios", []) if sc.get(key)]
    if data.get(key):
        found.append((None, data[key]))
    return found


def _load_resources(conn: Connection, trid: int, data: dict) -> None:
    """resource_usage rows of the North-South step's telemetry, per scenario window (docs/telemetry.md)."""
    conn.execute(sa.text("DELETE FROM resource_usage WHERE target_run_id = :id"), {"id": trid})
    rows = []
    for scenario, resources in _telemetry_windows(data, "resources"):
        window = resources.get("window") or {}
        rows += [{"id": trid, "scenario": scenario, "source": r["source"], "component": r["component"],
                  "metric": r["metric"], "unit": r["unit"], "min": r.get("min"), "mean": r.get("mean"),
                  "max": r.get("max"), "samples": r.get("samples") or 0, "ws": _ts(window.get("start_epoch")),
                  "we": _ts(window.get("end_epoch"))} for r in resources.get("rows") or []]
    if rows:
        conn.execute(sa.text(
            "INSERT INTO resource_usage (target_run_id, scenario, source, component, metric, unit, min_value, "
            " mean_value, max_value, samples, window_start, window_end) "
            "VALUES (:id, :scenario, :source, :component, :metric, :unit, :min, :mean, :max, :samples, :ws, :we)"),
            rows)


def _load_server_histograms(conn: Connection, trid: int, data: dict) -> None:
    """server_histograms rows: vLLM's histograms over each scenario window (difference of two scrapes)."""
    conn.execute(sa.text("DELETE FROM server_histograms WHERE target_run_id = :id"), {"id": trid})
    rows = []
    for scenario, section in _telemetry_windows(data, "server_histograms"):
        rows += [{"id": trid, "scenario": scenario, "metric": h["metric"], "kind": kind,
                  "unit": h.get("unit", "seconds"), "buckets": json.dumps(h["buckets"]), "sum": h["sum"],
                  "count": h["count"], "mean": h.get("mean_ms"), "p50": h.get("p50_ms"), "p90": h.get("p90_ms"),
                  "p95": h.get("p95_ms"), "p99": h.get("p99_ms"), "url": section.get("url")}
                 for kind, h in (section.get("metrics") or {}).items()]
    if rows:
        conn.execute(sa.text(
            "INSERT INTO server_histograms (target_run_id, scenario, metric, kind, unit, buckets, sum, count, "
            " mean_ms, p50_ms, p90_ms, p95_ms, p99_ms, source_url) "
            "VALUES (:id, :scenario, :metric, :kind, :unit, CAST(:buckets AS jsonb), :sum, :count, :mean, :p50, "
            " :p90, :p95, :p99, :url)"), rows)


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


# positions in record_row's tuple
_WARMUP, _T_END, _TTFT, _E2E, _TPOT, _TOKENS, _ERROR = 3, 9, 10, 11, 12, 13, 19


def _copy_records(conn: Connection, trid: int, scenario: str, records: list[dict]) -> tuple[list, list, list, list]:
    """COPY a scenario's raw records, and return the samples its headline intervals are computed from,
    with the summary's inclusion: TTFT, TPOT and E2E of the measured successful requests
    (RequestRecord.ok), and the output tokens of every measured request (0 for a failed one).
    Rows are streamed, not kept: holding 100k rows with their float lists makes the garbage
    collector walk them again and again (twice the load time in benchmarks/store_load.py)."""
    ttft, tpot, e2e, tokens = [], [], [], []
    raw = conn.connection.driver_connection  # psycopg 3 connection, inside this transaction
    with raw.cursor() as cur:
        with cur.copy(f"COPY ns_requests ({', '.join(_RECORD_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(list(_RECORD_TYPES.values()))
            for r in records:
                row = record_row(trid, scenario, r)
                copy.write_row(row)
                if row[_WARMUP]:
                    continue
                tokens.append(row[_TOKENS] or 0)
                if row[_ERROR] is None and row[_T_END] is not None:
                    ttft.append(row[_TTFT])
                    tpot.append(row[_TPOT])
                    e2e.append(row[_E2E])
    return ttft, tpot, e2e, tokens
