"""Records of several shards merged into one scenario: one truth for worker processes and client pods.

Each shard's records are on its own clock, relative to its measured start ``t0``. Shards that
share a clock (worker processes: ``time.perf_counter`` is one system-wide monotonic clock on Linux)
or whose clocks agree on the epoch (client pods) are put on one clock by shifting each shard by
its ``t0`` minus the earliest ``t0``; the merged records are then summarised and judged by the
validity gate exactly as one process's records are (docs/metrics.md, "Workers and shards").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from workload.bench.metrics import SLO, summarize
from workload.bench.records import RequestRecord
from workload.bench.summary import NorthSouthScenario, WorkerFigures, WorkersReport

# What ended a merged scenario: the first of these any shard reports.
_STOP_ORDER = ("error_budget", "max_duration", "max_requests")


class MergeError(ValueError):
    """Shard documents that do not make one scenario."""


@dataclass
class Part:
    """One shard's outcome: records relative to its ``t0``, ``t0`` on the clock the parts share."""

    records: list[RequestRecord]
    t0: float
    wall_time_s: float
    stopped_by: str
    figures: WorkerFigures | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Merged:
    records: list[RequestRecord]  # relative to the earliest t0, ordered by global index
    wall_time_s: float  # earliest t0 to the last request's end over every part
    base: float  # the earliest t0 (on the parts' clock)
    stopped_by: str


def combine_stopped_by(reasons: Sequence[str]) -> str:
    for reason in _STOP_ORDER:
        if reason in reasons:
            return reason
    return reasons[0] if reasons else "max_requests"


def merge_parts(parts: Sequence[Part]) -> Merged:
    """Shift every part onto the earliest ``t0`` and join the records."""
    if not parts:
        raise MergeError("no shards to merge")
    base = min(p.t0 for p in parts)
    records: list[RequestRecord] = []
    wall = 0.0
    for p in parts:
        offset = p.t0 - base
        for rec in p.records:
            rec.shift(offset)
        records.extend(p.records)
        wall = max(wall, offset + p.wall_time_s)
    indices = [r.index for r in records]
    if len(set(indices)) != len(indices):
        raise MergeError("two shards sent a request with the same global index: they are not one partition")
    records.sort(key=lambda r: r.index)
    return Merged(records, wall, base, combine_stopped_by([p.stopped_by for p in parts]))


def scenario_document(scenario: str, strategy: dict, merged: Merged, started_at_epoch: float, *, slo: SLO,
                      cache: str, concurrency: int | None, offered_rate_rps: float | None,
                      connect_samples_ms: Sequence[float] | None = None, connect_errors: int = 0,
                      connect_first_error: str | None = None, slo_attainment_target: float | None = None,
                      workers: WorkersReport | None = None, observed: dict | None = None) -> dict:
    """The scenario's document (``NorthSouthScenario``) from its merged records. A worker that did
    not finish (``workers.failed``) makes the scenario invalid, whatever its records say."""
    summary = summarize(merged.records, merged.wall_time_s, slo, offered_rate_rps,
                        connect_samples_ms=connect_samples_ms, connect_errors=connect_errors,
                        concurrency=concurrency)
    summary.stopped_by = merged.stopped_by
    summary.cache = cache
    if connect_first_error:
        summary.tcp_connect.first_error = connect_first_error
    if slo_attainment_target is not None:
        summary.meets_slo_target = summary.slo_attainment >= slo_attainment_target
    summary.workers = workers
    if workers is not None and workers.failed:
        summary.valid, summary.invalid_reason = False, workers.failed
    document = NorthSouthScenario(
        scenario=scenario, started_at_epoch=started_at_epoch, measured_started_at_epoch=started_at_epoch,
        measured_ended_at_epoch=started_at_epoch + merged.wall_time_s, summary=summary, strategy=strategy,
        records=[r.to_dict() for r in merged.records], **(observed or {}))
    return document.model_dump(mode="json")


def _data(doc: dict) -> dict:
    """A shard's north-south data: the CLI's result document, or its ``data`` already."""
    if "scenarios" in doc:
        return doc
    if doc.get("ok") is False:
        raise MergeError(f"a shard failed: {doc.get('error') or 'no reason given'}")
    if isinstance(doc.get("data"), dict):
        return doc["data"]
    raise MergeError("not a north-south document (no scenarios)")


def merge_shard_documents(docs: list[dict]) -> dict:
    """Client pods' shard documents (``north-south --shard I/N --start-at EPOCH``) merged into the
    document one process would have written for the whole schedule, plus ``shards``: each
    shard's index, how late it started and its measured requests."""
    from workload.bench.northsouth import NorthSouthConfig, _mark_headline, offered_rate, validity_concurrency

    datas = [_data(d) for d in docs]
    if not datas:
        raise MergeError("no shard documents to merge")
    shards = []
    for i, data in enumerate(datas):
        shard = data.get("shard")
        if not isinstance(shard, dict):
            raise MergeError(f"document {i} is not a shard (no 'shard' block): run north-south with --shard I/N")
        shards.append(shard)
    count = shards[0]["count"]
    if any(s["count"] != count for s in shards):
        raise MergeError(f"shards of different splits: counts {sorted({s['count'] for s in shards})}")
    indices = sorted(s["index"] for s in shards)
    if indices != list(range(count)):
        missing = sorted(set(range(count)) - set(indices))
        twice = sorted({i for i in indices if indices.count(i) > 1})
        raise MergeError(f"shards of a {count}-way split must each come once: "
                         + ", ".join(x for x in (f"missing {missing}" if missing else "",
                                                 f"more than once {twice}" if twice else "") if x))
    canonical = [json.dumps(d.get("config"), sort_keys=True) for d in datas]
    if len(set(canonical)) > 1:
        raise MergeError("shards ran with different configs: they are not one schedule")
    if len({d.get("endpoint") for d in datas}) > 1:
        raise MergeError(f"shards loaded different endpoints: {sorted({str(d.get('endpoint')) for d in datas})}")
    if any(len(d.get("scenarios") or []) != 1 for d in datas):
        raise MergeError("a shard document must hold exactly one scenario (sweeps are not sharded)")
    config = NorthSouthConfig.model_validate(datas[0]["config"])
    if datas[0]["scenarios"][0]["scenario"] != datas[-1]["scenarios"][0]["scenario"]:
        raise MergeError("shards ran different scenarios")

    order = sorted(range(len(datas)), key=lambda i: shards[i]["index"])
    parts, per_worker, shard_rows = [], [], []
    samples: list[float] = []
    errors, first_error, failed = 0, None, None
    for i in order:
        data, shard = datas[i], shards[i]
        sc = data["scenarios"][0]
        s = sc["summary"]
        parts.append(Part([RequestRecord.from_dict(r) for r in sc["records"]], shard["t0_epoch"],
                          s["wall_time_s"], s.get("stopped_by") or "max_requests"))
        tcp = s["tcp_connect"]
        samples.extend(tcp.get("before_load_samples_ms") or [])
        errors += tcp.get("before_load_errors") or 0
        first_error = first_error or tcp.get("first_error")
        report = s.get("workers")
        for w in (report or {}).get("per_worker") or []:
            per_worker.append(WorkerFigures.model_validate({**w, "late_by_s": shard.get("late_by_s")}))
        if report and report.get("failed") and failed is None:
            failed = f"shard {shard['index']}/{count}: {report['failed']}"
        shard_rows.append({"index": shard["index"], "late_by_s": shard.get("late_by_s"),
                           "requests": s["requests"], "t0_epoch": shard["t0_epoch"]})
    merged = merge_parts(parts)
    first = datas[order[0]]["scenarios"][0]
    observed = {k: v for k, v in first.items() if k not in NorthSouthScenario.model_fields}
    strategy = config.strategy
    workers = WorkersReport(count=len(per_worker) or count, failed=failed, per_worker=per_worker)
    document = scenario_document(
        first["scenario"], first["strategy"], merged, merged.base, slo=SLO(**config.slo), cache=config.cache,
        concurrency=validity_concurrency(strategy), offered_rate_rps=offered_rate(strategy),
        connect_samples_ms=samples, connect_errors=errors, connect_first_error=first_error,
        workers=workers, observed=observed)
    head = datas[order[0]]
    out = {k: v for k, v in head.items() if k not in ("shard", "scenarios")}
    out["scenarios"] = [document]
    _mark_headline(out, config)
    out["shards"] = shard_rows
    return out
