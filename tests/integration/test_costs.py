"""The cost model against a real PostgreSQL: loading config/costs.yaml into cost_inputs, and every
figure the views derive, checked against numbers computed by hand (the arithmetic is in the comments).

Runs, target runs and north-south summaries are inserted directly, with round numbers, so that each
expected figure can be worked out on paper.
"""

from __future__ import annotations

import json
import textwrap
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from ragbench import cli, costs, db, loader, pipeline, run_prices
from ragbench.errors import RagbenchError
from ragbench.paths import config_dir
from ragbench.scorecard import format_table, scorecard_rows
from ragbench.targets import TargetsConfig, load_targets
from workload.results import result_document

pytestmark = pytest.mark.integration

def _cluster(name: str, provider: str, **extra) -> dict:
    return {"name": name, "kind": "kubernetes", "provider": provider, "connection_id": f"kube_{name}",
            "overlay": f"k8s/overlays/{provider}", **extra}


TARGETS = TargetsConfig.model_validate({"targets": [
    {"name": "local", "kind": "local", "provider": "local"},
    _cluster("akamai-lke", "akamai-lke"),
    _cluster("aws-eks", "aws-eks", node_pools=[
        {"name": "gpu", "instance_type": "g6.xlarge", "count": 1, "gpu": True, "pricing_key": "gpu_node"},
        {"name": "cpu", "instance_type": "t3.medium", "count": 2, "pricing_key": "cpu_node"}]),
    _cluster("gcp-gke", "gcp-gke"),
    _cluster("other", "generic"),  # a provider with no prices
]})

TARGETS_YAML = """\
targets:
  - {name: local, kind: local, provider: local}
  - {name: akamai-lke, kind: kubernetes, provider: akamai-lke, connection_id: a, overlay: k8s/overlays/akamai-lke}
  - {name: aws-eks, kind: kubernetes, provider: aws-eks, connection_id: b, overlay: k8s/overlays/aws-eks}
  - {name: gcp-gke, kind: kubernetes, provider: gcp-gke, connection_id: c, overlay: k8s/overlays/gcp-gke}
  - {name: other, kind: kubernetes, provider: generic, connection_id: d, overlay: k8s/overlays/generic}
"""

# aws-eks with two dated price sets. The 2026-01-30 set is the seed:
#   0.8048 x 1 (g6.xlarge) + 0.0416 x 2 (t3.medium) + 0.10 (control plane) + 0.045 (NAT gateway)
#   = 0.8048 + 0.0832 + 0.10 + 0.045 = 1.0330 $/h
# The 2026-06-01 set: the GPU node drops to 0.70, the rest is unchanged:
#   0.70 + 0.0832 + 0.10 + 0.045 = 0.9282 $/h
TWO_SETS = """\
aws-eks:
  - as_of: 2026-01-30
    source: seed
    node_pools:
      - {component: gpu_node, instance_type: g6.xlarge, gpu: true, count: 1, usd_per_hour: 0.8048}
      - {component: cpu_node, instance_type: t3.medium, count: 2, usd_per_hour: 0.0416}
    control_plane: {usd_per_hour: 0.10}
    nat_gateway: {usd_per_hour: 0.045, usd_per_gb: 0.045}
    storage: {usd_per_gb_month: 0.08, gb: 60}
    egress: {usd_per_gb: 0.09}
  - as_of: 2026-06-01
    source: a later price list
    node_pools:
      - {component: gpu_node, instance_type: g6.xlarge, gpu: true, count: 1, usd_per_hour: 0.70}
      - {component: cpu_node, instance_type: t3.medium, count: 2, usd_per_hour: 0.0416}
    control_plane: {usd_per_hour: 0.10}
    nat_gateway: {usd_per_hour: 0.045, usd_per_gb: 0.045}
local:
  - as_of: 2026-01-01
    source: default
    node_pools:
      - {component: machine, instance_type: this-machine, count: 1, usd_per_hour: 0.0}
"""
AWS_JAN = 1.0330
AWS_JUN = 0.9282


@pytest.fixture
def migrated(engine):
    db.migrate(engine)
    return engine


def write(tmp_path: Path, text: str, name: str = "costs.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(engine, tmp_path: Path, text: str = TWO_SETS) -> costs.LoadResult:
    return costs.load_into(engine, write(tmp_path, text), TARGETS)


def add_target_run(engine, target: str, provider: str, started_at: str, finished_at: str | None = None) -> int:
    run_id = f"run-{target}-{started_at}"
    loader.record_run(engine, run_id, "rag_benchmark", started_at, "manual", {}, None)
    trid = loader.upsert_target_run(engine, run_id, target, "kubernetes", provider, None, None, {}, started_at)
    with engine.begin() as conn:
        run_prices.freeze(conn, trid)  # as a load does: the price in force now is the run's for good
        if finished_at:
            conn.execute(sa.text("UPDATE target_runs SET status = 'succeeded', finished_at = :f "
                                 "WHERE target_run_id = :id"), {"f": finished_at, "id": trid})
    return trid


def add_scenario(engine, trid: int, scenario: str, *, wall_time_s: float, output_tokens: int, completed: int,
                 requests: int | None = None, slo_attainment: float | None = None, goodput_rps: float | None = None,
                 headline: bool = True, valid: bool = True, operating_point: bool | None = None,
                 meets_slo_target: bool | None = None) -> None:
    requests = completed if requests is None else requests
    errored = requests - completed
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO ns_summaries (target_run_id, scenario, headline, started_at, strategy, requests, "
            " completed, errored, error_rate, wall_time_s, output_tokens, output_tokens_per_s, requests_per_s, "
            " slo_attainment, goodput_rps, valid, operating_point, summary) VALUES (:id, :sc, :h, now(), '{}', :req, "
            " :comp, :err, :rate, :wall, :out, :tps, :rps, :slo, :good, :valid, :op, CAST(:summary AS jsonb))"),
            {"id": trid, "sc": scenario, "h": headline, "req": requests, "comp": completed, "err": errored,
             "rate": errored / requests if requests else 0.0, "wall": wall_time_s, "out": output_tokens,
             "tps": output_tokens / wall_time_s, "rps": completed / wall_time_s, "slo": slo_attainment,
             "good": goodput_rps, "valid": valid, "op": operating_point,
             "summary": json.dumps({} if meets_slo_target is None else {"meets_slo_target": meets_slo_target})})


def query(engine, sql: str, **params) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.text(sql), params).mappings()]


def one(engine, view: str, target: str, started_at: str | None = None) -> dict:
    sql = f"SELECT * FROM {view} WHERE target = :t"
    rows = query(engine, sql, t=target)
    if started_at is not None:
        rows = [r for r in rows if r["run_id"] == f"run-{target}-{started_at}"]
    assert len(rows) == 1, rows
    return rows[0]


def cost_rows(engine) -> list[tuple]:
    return [tuple(r.values()) for r in query(
        engine, "SELECT provider, as_of, component, unit, price_usd, quantity, source, xmin::text AS xmin "
                "FROM cost_inputs ORDER BY provider, as_of, component")]


# --- the checked-in file ------------------------------------------------------------------------

def test_seed_prices_give_the_cluster_dollars_per_hour(migrated):
    result = costs.load_into(migrated, config_dir() / "costs.yaml", load_targets())  # the checked-in pair
    # the 2026-01-30 seed of each cloud, the 2026-12-02 sets that priced the resized node pools, local
    assert (result.price_sets, result.inserted, result.updated, result.deleted) == (7, result.rows, 0, 0)
    current = {r["provider"]: r for r in query(migrated, "SELECT * FROM v_cost_cluster WHERE superseded_on IS NULL")}
    assert set(current) == {"akamai-lke", "aws-eks", "gcp-gke", "local"}
    # Akamai LKE: 0.52 x 1 (g2-gpu-rtx4000a1-s) + 0.288 x 2 (g6-standard-8) + 0 (control plane) = 1.096
    assert current["akamai-lke"]["usd_per_hour"] == pytest.approx(1.096, abs=1e-12)
    # AWS EKS: 0.8048 + 0.384 x 2 (m6i.2xlarge) + 0.10 (control plane) + 0.045 (NAT gateway) = 1.7178
    assert current["aws-eks"]["usd_per_hour"] == pytest.approx(1.7178, abs=1e-12)
    # GCP GKE: 0.8536 + 0.2682 x 2 (e2-standard-8) + 0.10 (management) + 0.0014 x 3 (Cloud NAT) = 1.4942
    assert current["gcp-gke"]["usd_per_hour"] == pytest.approx(1.4942, abs=1e-12)
    assert current["local"]["usd_per_hour"] == 0.0  # the default price of the local machine
    assert current["aws-eks"]["hourly_components"] == [
        "control_plane: 1 x $0.1/h", "cpu_node: 2 x $0.384/h", "gpu_node: 1 x $0.8048/h", "nat_gateway: 1 x $0.045/h"]
    assert current["aws-eks"]["as_of"] == date(2026, 12, 2)
    # History stays: the seed prices the runs before 2026-12-02.
    seed = {r["provider"]: r for r in query(migrated, "SELECT * FROM v_cost_cluster WHERE as_of = '2026-01-30'")}
    assert seed["aws-eks"]["superseded_on"] == date(2026, 12, 2)
    # AWS EKS seed: 0.8048 + 0.0416 x 2 + 0.10 (control plane) + 0.045 (NAT gateway) = 1.0330
    assert seed["aws-eks"]["usd_per_hour"] == pytest.approx(1.0330, abs=1e-12)
    assert seed["akamai-lke"]["usd_per_hour"] == pytest.approx(0.592, abs=1e-12)
    assert seed["gcp-gke"]["usd_per_hour"] == pytest.approx(1.0876, abs=1e-12)
    usage = {(r["provider"], r["component"]): r
             for r in query(migrated, "SELECT * FROM v_cost_usage_prices WHERE as_of = '2026-12-02'")}
    assert set(usage) == {("akamai-lke", "storage"), ("akamai-lke", "egress"), ("aws-eks", "storage"),
                          ("aws-eks", "egress"), ("aws-eks", "nat_gateway_data"), ("gcp-gke", "storage"),
                          ("gcp-gke", "egress"), ("gcp-gke", "nat_gateway_data")}
    # storage per GB-month: the 60 GB the manifests claim, plus node root disks billed apart
    assert usage["aws-eks", "storage"]["usd_per_month"] == pytest.approx(20.80)    # 0.08 x (60 + 100 + 2 x 50)
    assert usage["akamai-lke", "storage"]["usd_per_month"] == pytest.approx(6.00)  # 0.10 x 60
    assert usage["gcp-gke", "storage"]["usd_per_month"] == pytest.approx(36.00)    # 0.10 x (60 + 3 x 100)
    assert (usage["aws-eks", "egress"]["unit"], usage["aws-eks", "egress"]["price_usd"],
            usage["aws-eks", "egress"]["usd_per_month"]) == ("usd_per_gb", 0.09, None)
    assert usage["aws-eks", "nat_gateway_data"]["price_usd"] == 0.045
    assert usage["gcp-gke", "nat_gateway_data"]["price_usd"] == 0.045  # Cloud NAT, beside EKS's NAT gateway
    assert usage["akamai-lke", "egress"]["price_usd"] == 0.005
    assert usage["gcp-gke", "egress"]["price_usd"] == 0.12
    source = query(migrated, "SELECT source FROM cost_inputs WHERE provider = 'aws-eks' AND component = 'gpu_node' "
                             "AND as_of = '2026-12-02'")
    assert source[0]["source"].startswith("1 x g6.xlarge (GPU); https://aws.amazon.com/ec2/pricing/on-demand/")


# --- loading ------------------------------------------------------------------------------------

def test_rows_in_cost_inputs(migrated, tmp_path):
    result = load(migrated, tmp_path)
    # set 1: gpu_node, cpu_node, control_plane, nat_gateway, nat_gateway_data, storage, egress (7);
    # set 2: the same without storage and egress (5); local: machine (1)
    assert (result.price_sets, result.rows, result.inserted) == (3, 13, 13)
    rows = {(r["provider"], str(r["as_of"]), r["component"]): r for r in query(migrated, "SELECT * FROM cost_inputs")}
    assert len(rows) == 13
    gpu = rows["aws-eks", "2026-01-30", "gpu_node"]
    assert (gpu["unit"], float(gpu["price_usd"]), float(gpu["quantity"])) == ("usd_per_hour", 0.8048, 1)
    cpu = rows["aws-eks", "2026-01-30", "cpu_node"]
    assert (float(cpu["price_usd"]), float(cpu["quantity"])) == (0.0416, 2)
    assert cpu["source"] == "2 x t3.medium; seed"
    storage = rows["aws-eks", "2026-01-30", "storage"]
    assert (storage["unit"], float(storage["price_usd"]), float(storage["quantity"])) == ("usd_per_gb_month", 0.08, 60)
    nat_gb = rows["aws-eks", "2026-01-30", "nat_gateway_data"]
    assert (nat_gb["unit"], float(nat_gb["price_usd"]), float(nat_gb["quantity"])) == ("usd_per_gb", 0.045, 1)
    assert float(rows["aws-eks", "2026-06-01", "gpu_node"]["price_usd"]) == 0.70


def test_loading_again_changes_nothing(migrated, tmp_path):
    first = load(migrated, tmp_path)
    before = cost_rows(migrated)
    second = load(migrated, tmp_path)
    assert (second.inserted, second.updated, second.deleted, second.unchanged) == (0, 0, 0, first.rows)
    assert cost_rows(migrated) == before  # same values, and not even rewritten (same xmin)
    assert second.describe(Path("config/costs.yaml")) == (
        "loaded 3 price set(s), 13 cost input(s) from config/costs.yaml: 0 new, 0 changed, 0 removed, 13 unchanged")


def test_a_changed_file_updates_and_removes_only_what_changed(migrated, tmp_path):
    load(migrated, tmp_path)
    with migrated.begin() as conn:  # a provider the file does not list is left alone
        conn.execute(sa.text("INSERT INTO cost_inputs (provider, as_of, component, unit, price_usd) "
                             "VALUES ('elsewhere', '2026-01-01', 'node', 'usd_per_hour', 1)"))
    before = {r[:3]: r for r in cost_rows(migrated)}
    changed = TWO_SETS.replace("usd_per_hour: 0.70}", "usd_per_hour: 0.71}").replace(
        "    egress: {usd_per_gb: 0.09}\n", "")
    result = load(migrated, tmp_path, changed)
    assert (result.inserted, result.updated, result.deleted) == (0, 1, 1)
    after = {r[:3]: r for r in cost_rows(migrated)}
    assert set(before) - set(after) == {("aws-eks", date(2026, 1, 30), "egress")}
    assert float(after["aws-eks", date(2026, 6, 1), "gpu_node"][4]) == 0.71
    untouched = [k for k in after if k != ("aws-eks", date(2026, 6, 1), "gpu_node")]
    assert all(after[k] == before[k] for k in untouched)  # same xmin: not rewritten
    assert ("elsewhere", date(2026, 1, 1), "node") in after


def test_a_bad_file_loads_nothing(migrated, tmp_path):
    load(migrated, tmp_path)
    before = cost_rows(migrated)
    bad = TWO_SETS.replace("usd_per_hour: 0.70}", "usd_per_hour: -0.70}")
    with pytest.raises(RagbenchError, match=r"aws-eks\[2026-06-01\]\.node_pools\[0\]\.usd_per_hour: must be >= 0$"):
        load(migrated, tmp_path, bad)
    assert cost_rows(migrated) == before


# --- which price set prices a run ---------------------------------------------------------------

@pytest.mark.parametrize(("started_at", "as_of", "usd_per_hour"), [
    ("2026-01-29T23:59:59+00:00", None, None),          # before the first set: not priced (NULL)
    ("2026-01-30T00:00:00+00:00", "2026-01-30", AWS_JAN),  # on the set's day: as_of is not after the start
    ("2026-03-15T12:00:00+00:00", "2026-01-30", AWS_JAN),  # between the sets
    ("2026-06-01T01:30:00+02:00", "2026-01-30", AWS_JAN),  # = 2026-05-31 23:30 UTC: still the old set
    ("2026-06-01T00:00:00+00:00", "2026-06-01", AWS_JUN),  # the new set from its day on
    ("2026-11-27T10:00:00+00:00", "2026-06-01", AWS_JUN),  # after both: the newest
])
def test_a_run_is_priced_with_the_newest_set_not_after_its_start(migrated, tmp_path, started_at, as_of,
                                                                   usd_per_hour):
    load(migrated, tmp_path)
    trid = add_target_run(migrated, "aws-eks", "aws-eks", started_at)
    add_scenario(migrated, trid, "concurrent-8", wall_time_s=600, output_tokens=300_000, completed=1_000)
    card = one(migrated, "v_scorecard", "aws-eks")
    assert card["cost_as_of"] == (date.fromisoformat(as_of) if as_of else None)
    if usd_per_hour is None:
        assert (card["usd_per_hour"], card["usd_per_1m_output_tokens"], card["usd_per_1k_requests"]) == \
            (None, None, None)
    else:
        assert card["usd_per_hour"] == pytest.approx(usd_per_hour, abs=1e-12)
        # 600 s = 1/6 h; 300,000 tokens; 1,000 requests
        assert card["usd_per_1m_output_tokens"] == pytest.approx(usd_per_hour / 6 / 0.3)
        assert card["usd_per_1k_requests"] == pytest.approx(usd_per_hour / 6)


def test_runs_of_one_night_before_and_after_a_price_change(migrated, tmp_path):
    """Several runs at once: each gets its own set, and the cluster view lists both sets."""
    load(migrated, tmp_path)
    for started in ("2026-01-15T02:00:00+00:00", "2026-02-15T02:00:00+00:00", "2026-07-15T02:00:00+00:00"):
        add_target_run(migrated, "aws-eks", "aws-eks", started)
    rows = query(migrated, "SELECT started_at, cost_as_of, usd_per_hour FROM v_scorecard ORDER BY started_at")
    assert [(r["cost_as_of"], r["usd_per_hour"] and round(r["usd_per_hour"], 6)) for r in rows] == [
        (None, None), (date(2026, 1, 30), AWS_JAN), (date(2026, 6, 1), AWS_JUN)]
    sets = query(migrated, "SELECT as_of, superseded_on, usd_per_hour FROM v_cost_cluster "
                           "WHERE provider = 'aws-eks' ORDER BY as_of")
    assert [(s["as_of"], s["superseded_on"], round(s["usd_per_hour"], 6)) for s in sets] == [
        (date(2026, 1, 30), date(2026, 6, 1), AWS_JAN), (date(2026, 6, 1), None, AWS_JUN)]


# --- what a run cost ----------------------------------------------------------------------------

def test_run_cost_figures(migrated, tmp_path):
    load(migrated, tmp_path)
    trid = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00",
                          finished_at="2026-03-15T10:30:00+00:00")
    # headline scenario: 600 s, 300,000 output tokens, 1,000 of 1,040 requests succeeded
    add_scenario(migrated, trid, "concurrent-8", wall_time_s=600, output_tokens=300_000, completed=1_000,
                 requests=1_040)
    r = one(migrated, "v_cost_run", "aws-eks")
    assert r["usd_per_hour"] == pytest.approx(1.0330)
    assert r["ns_wall_time_s"] == 600
    # scenario cost: 1.0330 $/h x 600 s / 3600 s/h = 0.172166... $
    assert r["ns_cost_usd"] == pytest.approx(0.17216667, abs=1e-8)
    # the whole target run: 10:00 -> 10:30 = 1800 s; 1.0330 x 0.5 h = 0.5165 $
    assert r["target_run_duration_s"] == 1800.0
    assert r["target_run_cost_usd"] == pytest.approx(0.5165)
    # $ per 1M output tokens: 0.172166... $ / 300,000 tokens x 1e6 = 0.573888... $
    assert r["usd_per_1m_output_tokens"] == pytest.approx(0.57388889, abs=1e-8)
    # $ per 1k successful requests (1,000, not 1,040): 0.172166... / 1,000 x 1,000 = 0.172166... $
    assert r["usd_per_1k_requests"] == pytest.approx(0.17216667, abs=1e-8)
    # output tokens/s = 300,000 / 600 = 500; per $/hour: 500 / 1.0330 = 484.027...
    assert r["output_tokens_per_s"] == 500
    assert r["output_tokens_per_s_per_usd_per_hour"] == pytest.approx(484.02710552, abs=1e-8)
    assert (r["output_tokens"], r["completed_requests"], r["cost_as_of"]) == (300_000, 1_000, date(2026, 1, 30))
    card = one(migrated, "v_scorecard", "aws-eks")
    assert card["usd_per_1m_output_tokens"] == r["usd_per_1m_output_tokens"]
    assert card["usd_per_1k_requests"] == r["usd_per_1k_requests"]


def test_unfinished_target_run_has_no_duration_cost(migrated, tmp_path):
    load(migrated, tmp_path)
    trid = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00")
    add_scenario(migrated, trid, "concurrent-8", wall_time_s=600, output_tokens=300_000, completed=1_000)
    r = one(migrated, "v_cost_run", "aws-eks")
    assert (r["finished_at"], r["target_run_duration_s"], r["target_run_cost_usd"]) == (None, None, None)
    assert r["ns_cost_usd"] == pytest.approx(0.17216667, abs=1e-8)


def test_a_provider_without_prices_gives_null_costs(migrated, tmp_path):
    load(migrated, tmp_path)
    trid = add_target_run(migrated, "other", "generic", "2026-03-15T10:00:00+00:00",
                          finished_at="2026-03-15T10:30:00+00:00")
    add_scenario(migrated, trid, "concurrent-8", wall_time_s=600, output_tokens=300_000, completed=1_000,
                 slo_attainment=1.0, goodput_rps=1.5, operating_point=True, meets_slo_target=True)
    card = one(migrated, "v_scorecard", "other")
    assert card["output_tokens_per_s"] == 500  # measured, just not priced
    assert [card[k] for k in ("cost_as_of", "usd_per_hour", "usd_per_1m_output_tokens", "usd_per_1k_requests")] \
        == [None] * 4
    r = one(migrated, "v_cost_run", "other")
    assert [r[k] for k in ("usd_per_hour", "ns_cost_usd", "target_run_cost_usd", "usd_per_1m_output_tokens",
                           "usd_per_1k_requests", "output_tokens_per_s_per_usd_per_hour")] == [None] * 6
    assert r["target_run_duration_s"] == 1800.0
    op = one(migrated, "v_cost_slo_operating_point", "other")
    assert op["scenario"] == "concurrent-8"  # the operating point is found, its cost is unknown
    assert (op["usd_per_hour"], op["cost_usd"], op["usd_per_1m_output_tokens"]) == (None, None, None)
    assert "generic" not in {r["provider"] for r in query(migrated, "SELECT provider FROM v_cost_cluster")}


def test_a_price_of_zero_gives_zero_costs(migrated, tmp_path):
    load(migrated, tmp_path)
    trid = add_target_run(migrated, "local", "local", "2026-03-15T10:00:00+00:00",
                          finished_at="2026-03-15T10:02:00+00:00")
    add_scenario(migrated, trid, "concurrent-4", wall_time_s=8, output_tokens=18, completed=3, requests=5)
    card = one(migrated, "v_scorecard", "local")
    assert (card["cost_as_of"], card["usd_per_hour"]) == (date(2026, 1, 1), 0.0)
    assert (card["usd_per_1m_output_tokens"], card["usd_per_1k_requests"]) == (0.0, 0.0)
    r = one(migrated, "v_cost_run", "local")
    assert (r["ns_cost_usd"], r["target_run_duration_s"], r["target_run_cost_usd"]) == (0.0, 120.0, 0.0)
    assert r["output_tokens_per_s_per_usd_per_hour"] is None  # tokens/s per $0/h has no value


def test_no_tokens_or_no_successes_give_null_unit_costs(migrated, tmp_path):
    load(migrated, tmp_path)
    trid = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00")
    add_scenario(migrated, trid, "all-failed", wall_time_s=60, output_tokens=0, completed=0, requests=8)
    card = one(migrated, "v_scorecard", "aws-eks")
    assert card["usd_per_hour"] == pytest.approx(1.0330)
    assert (card["usd_per_1m_output_tokens"], card["usd_per_1k_requests"]) == (None, None)
    # the time was still paid for: 1.0330 x 60 / 3600 = 0.0172166... $
    assert one(migrated, "v_cost_run", "aws-eks")["ns_cost_usd"] == pytest.approx(0.01721667, abs=1e-8)


def test_a_failed_target_without_north_south_is_priced_per_hour_only(migrated, tmp_path):
    load(migrated, tmp_path)
    add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00", finished_at="2026-03-15T10:06:00+00:00")
    r = one(migrated, "v_cost_run", "aws-eks")
    assert r["scenario"] is None and r["ns_cost_usd"] is None and r["usd_per_1m_output_tokens"] is None
    # 6 minutes of the cluster: 1.0330 x 0.1 h = 0.1033 $
    assert r["target_run_cost_usd"] == pytest.approx(0.1033)


# --- the SLO operating point --------------------------------------------------------------------

def test_slo_operating_point_is_the_level_the_load_generator_chose(migrated, tmp_path):
    """The view applies no threshold of its own: the sweep ran with an SLO attainment target of
    0.90, so the level at 0.90 is the operating point (a 0.95 written into SQL would have said 4.0)."""
    load(migrated, tmp_path)
    trid = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00")
    # a sweep: four load levels of 60 s each
    add_scenario(migrated, trid, "concurrent-2", wall_time_s=60, output_tokens=12_000, completed=120,
                 slo_attainment=1.00, goodput_rps=2.0, headline=False, operating_point=False, meets_slo_target=True)
    add_scenario(migrated, trid, "concurrent-4", wall_time_s=60, output_tokens=21_600, completed=210,
                 slo_attainment=0.97, goodput_rps=3.5, headline=False, operating_point=False, meets_slo_target=True)
    add_scenario(migrated, trid, "concurrent-8", wall_time_s=60, output_tokens=26_000, completed=250,
                 requests=252, slo_attainment=0.95, goodput_rps=4.0, headline=False, operating_point=False,
                 meets_slo_target=True)
    add_scenario(migrated, trid, "concurrent-16", wall_time_s=60, output_tokens=26_000, completed=250,
                 requests=260, slo_attainment=0.90, goodput_rps=3.9, operating_point=True, meets_slo_target=True)
    op = one(migrated, "v_cost_slo_operating_point", "aws-eks")
    assert (op["scenarios"], op["scenarios_meeting_slo"], op["no_operating_point"]) == (4, 4, False)
    assert (op["scenario"], op["goodput_rps"], op["slo_attainment"]) == ("concurrent-16", 3.9, 0.90)
    assert (op["output_tokens"], op["completed_requests"], op["wall_time_s"]) == (26_000, 250, 60)
    assert op["usd_per_hour"] == pytest.approx(1.0330)
    # cost of the scenario: 1.0330 x 60 / 3600 = 0.0172166... $
    assert op["cost_usd"] == pytest.approx(0.01721667, abs=1e-8)
    # per 1M tokens: 0.0172166... / 26,000 x 1e6 = 0.662179... $
    assert op["usd_per_1m_output_tokens"] == pytest.approx(0.66217949, abs=1e-8)
    # per 1k successful requests: 0.0172166... / 250 x 1,000 = 0.0688666... $
    assert op["usd_per_1k_requests"] == pytest.approx(0.06886667, abs=1e-8)
    # tokens/s = 26,000 / 60 = 433.33...; per $/hour: 433.33... / 1.0330 = 419.490158...
    assert op["output_tokens_per_s_per_usd_per_hour"] == pytest.approx(419.49015812, abs=1e-8)
    # the scorecard shows the same scenario (the load generator's headline) at the same price
    card = one(migrated, "v_scorecard", "aws-eks")
    assert (card["scenario"], card["operating_point"], card["no_operating_point"]) == ("concurrent-16", True, False)
    assert card["usd_per_1m_output_tokens"] == pytest.approx(op["usd_per_1m_output_tokens"])


def test_no_operating_point_prices_nothing(migrated, tmp_path):
    load(migrated, tmp_path)
    none = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00")
    add_scenario(migrated, none, "a", wall_time_s=100, output_tokens=30_000, completed=300,
                 slo_attainment=0.80, goodput_rps=2.4, operating_point=False, meets_slo_target=False)
    add_scenario(migrated, none, "b", wall_time_s=100, output_tokens=30_000, completed=300,
                 slo_attainment=0.9499, goodput_rps=2.8, headline=False, operating_point=False,
                 meets_slo_target=False)
    op = one(migrated, "v_cost_slo_operating_point", "aws-eks")
    assert (op["scenarios"], op["scenarios_meeting_slo"], op["no_operating_point"]) == (2, 0, True)
    assert (op["scenario"], op["cost_usd"], op["usd_per_1m_output_tokens"]) == (None, None, None)
    card = one(migrated, "v_scorecard", "aws-eks")
    assert (card["scenario"], card["no_operating_point"]) == ("a", True)  # shown, flagged
    assert card["usd_per_hour"] == pytest.approx(1.0330)
    assert (card["usd_per_1m_output_tokens"], card["usd_per_1k_requests"]) == (None, None)
    # a single scenario (not a sweep) has no operating point and is priced as the headline
    single = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-16T10:00:00+00:00")
    add_scenario(migrated, single, "c", wall_time_s=600, output_tokens=300_000, completed=1_000, slo_attainment=1.0)
    op = one(migrated, "v_cost_slo_operating_point", "aws-eks", "2026-03-16T10:00:00+00:00")
    assert (op["scenario"], op["no_operating_point"]) == (None, False)
    card = one(migrated, "v_scorecard", "aws-eks", "2026-03-16T10:00:00+00:00")
    assert card["usd_per_1m_output_tokens"] == pytest.approx(1.0330 / 6 / 0.3)


def test_an_invalid_scenario_cannot_be_the_operating_point(migrated, tmp_path):
    trid = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00")
    with pytest.raises(sa.exc.IntegrityError, match="ns_summaries_operating_point_valid"):
        add_scenario(migrated, trid, "a", wall_time_s=60, output_tokens=100, completed=10, valid=False,
                     operating_point=True)


# --- prices frozen at load, repriced on request -------------------------------------------------

def test_editing_cost_inputs_later_does_not_reprice_past_runs(migrated, tmp_path):
    load(migrated, tmp_path)
    trid = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00",
                          finished_at="2026-03-15T10:30:00+00:00")
    add_scenario(migrated, trid, "c", wall_time_s=600, output_tokens=300_000, completed=1_000)
    before = one(migrated, "v_scorecard", "aws-eks")
    # the January set is corrected afterwards (the GPU node doubled) and reloaded
    load(migrated, tmp_path, TWO_SETS.replace("usd_per_hour: 0.8048", "usd_per_hour: 1.6096"))
    assert query(migrated, "SELECT usd_per_hour FROM v_cost_cluster WHERE provider = 'aws-eks' "
                           "AND as_of = '2026-01-30'")[0]["usd_per_hour"] == pytest.approx(AWS_JAN + 0.8048)
    after = one(migrated, "v_scorecard", "aws-eks")
    assert (after["cost_as_of"], after["usd_per_hour"], after["usd_per_1m_output_tokens"]) == \
        (before["cost_as_of"], before["usd_per_hour"], before["usd_per_1m_output_tokens"])
    # a reload of the run's results keeps its price too
    loader.finish_target_run(migrated, trid, [], None)
    assert one(migrated, "v_scorecard", "aws-eks")["usd_per_hour"] == before["usd_per_hour"]
    # repricing is explicit
    changes = run_prices.reprice(migrated, run_id=before["run_id"])
    assert [(c.target, c.changed, c.new_as_of) for c in changes] == [("aws-eks", True, date(2026, 1, 30))]
    assert changes[0].describe().endswith("$1.0330/h (as of 2026-01-30) -> $1.8378/h (as of 2026-01-30)")
    assert one(migrated, "v_scorecard", "aws-eks")["usd_per_hour"] == pytest.approx(AWS_JAN + 0.8048)
    assert query(migrated, "SELECT repriced FROM target_run_prices")[0]["repriced"] is True


def test_reprice_since_a_day_and_the_cli(migrated, tmp_path, database_url, monkeypatch, capsys):
    old = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00")  # no prices loaded yet
    new = add_target_run(migrated, "aws-eks", "aws-eks", "2026-07-01T10:00:00+00:00")
    assert query(migrated, "SELECT count(*) AS n FROM target_run_prices WHERE as_of IS NULL")[0]["n"] == 2
    load(migrated, tmp_path)
    assert one(migrated, "v_scorecard", "aws-eks", "2026-07-01T10:00:00+00:00")["usd_per_hour"] is None  # frozen
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    assert cli.main(["costs", "reprice", "--since", "2026-06-01"]) == 0
    out = capsys.readouterr().out
    assert "run-aws-eks-2026-07-01T10:00:00+00:00 aws-eks: not priced -> $0.9282/h (as of 2026-06-01)" in out
    assert "repriced 1 target run(s): 1 changed" in out
    prices = {r["target_run_id"]: r["as_of"] for r in query(migrated, "SELECT * FROM target_run_prices")}
    assert prices == {old: None, new: date(2026, 6, 1)}  # the March run was not asked for
    assert cli.main(["costs", "reprice", "--run-id", "run-aws-eks-2026-03-15T10:00:00+00:00"]) == 0
    assert "not priced -> $1.0330/h (as of 2026-01-30)" in capsys.readouterr().out
    assert cli.main(["costs", "reprice"]) == 1  # neither --run-id nor --since
    assert "--run-id or --since" in capsys.readouterr().err


def test_the_cost_window_is_the_target_runs_own_steps(migrated, tmp_path):
    """The target run costs the span of its steps' documents, not the time its results were loaded;
    reloading a day later moves nothing."""
    load(migrated, tmp_path)
    trid = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00")
    steps = [("deploy-cluster", "2026-03-15T10:00:05+00:00", "2026-03-15T10:10:05+00:00"),
             ("north-south", "2026-03-15T10:12:00+00:00", "2026-03-15T10:22:00+00:00"),
             ("teardown-cluster", "2026-03-15T10:25:00+00:00", "2026-03-15T10:30:05+00:00")]
    for step, start, end in steps:
        doc = result_document(step, {}, started_at=start, ok=False, error="x")
        doc["finished_at"] = end
        loader.load_document(migrated, trid, doc)
    loader.finish_target_run(migrated, trid, ["north_south"], "x")  # finished_at = now(), years later
    r = one(migrated, "v_cost_run", "aws-eks")
    assert r["target_run_duration_s"] == 1800.0  # 10:00:05 -> 10:30:05
    assert r["target_run_cost_usd"] == pytest.approx(0.5165)
    loader.finish_target_run(migrated, trid, ["north_south"], "x")  # a re-run load
    assert one(migrated, "v_cost_run", "aws-eks")["target_run_duration_s"] == 1800.0


# --- where the numbers are shown ----------------------------------------------------------------

def test_scorecard_table_shows_dollars_per_million_tokens(migrated, tmp_path):
    load(migrated, tmp_path)
    started = "2026-03-15T10:00:00+00:00"
    run_id = "nightly"
    loader.record_run(migrated, run_id, "rag_benchmark", started, "scheduled", {}, None)
    for target, provider in (("aws-eks", "aws-eks"), ("local", "local"), ("other", "generic")):
        trid = loader.upsert_target_run(migrated, run_id, target, "kubernetes", provider, None, None, {}, started)
        with migrated.begin() as conn:
            run_prices.freeze(conn, trid)
        add_scenario(migrated, trid, "c", wall_time_s=600, output_tokens=300_000, completed=1_000)
    lines = format_table(scorecard_rows(migrated, run_id)).splitlines()
    header = [c.strip() for c in lines[1].split(" | ")]
    assert header[-1] == "$/1M tok"
    last = {line.split(" | ")[0].strip(): line.split(" | ")[-1].strip() for line in lines[3:6]}
    assert last == {"aws-eks": "0.574", "local": "0.000", "other": "-"}  # 0.573888... $; 0 $/h; no prices


def test_start_run_loads_the_cost_file(database_url, tmp_path, monkeypatch):
    write(tmp_path, TARGETS_YAML, "targets.yaml")
    write(tmp_path, TWO_SETS)
    monkeypatch.setenv("RAGBENCH_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    pipeline.start_run("manual__1", "rag_benchmark", "2026-03-15T10:00:00+00:00", "manual", {"targets": ["local"]})
    pipeline.start_run("manual__2", "rag_benchmark", "2026-03-16T10:00:00+00:00", "manual", {"targets": ["local"]})
    engine = db.connect(database_url)
    try:
        assert query(engine, "SELECT count(*) AS n FROM cost_inputs")[0]["n"] == 13  # loaded once, twice
        assert query(engine, "SELECT count(*) AS n FROM runs")[0]["n"] == 2
    finally:
        engine.dispose()


def test_start_run_refuses_a_bad_cost_file_before_touching_the_database(database_url, tmp_path, monkeypatch):
    write(tmp_path, TARGETS_YAML, "targets.yaml")
    write(tmp_path, TWO_SETS.replace("as_of: 2026-06-01", "as_of: 2026-06-31"))
    monkeypatch.setenv("RAGBENCH_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    with pytest.raises(RagbenchError, match=r"costs.yaml: aws-eks\[2026-06-31\]\.as_of: '2026-06-31' is not a date"):
        pipeline.start_run("manual__1", "rag_benchmark", "2026-03-15T10:00:00+00:00", "manual", {})
    engine = db.connect(database_url)
    try:
        assert query(engine, "SELECT count(*) AS n FROM pg_tables WHERE tablename = 'runs'")[0]["n"] == 0
    finally:
        engine.dispose()


def test_cli_costs_load_and_show(database_url, tmp_path, monkeypatch, capsys):
    write(tmp_path, TARGETS_YAML, "targets.yaml")
    path = write(tmp_path, TWO_SETS, "prices.yaml")
    monkeypatch.setenv("RAGBENCH_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    assert cli.main(["costs", "load", "--file", str(path)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"loaded 3 price set(s), 13 cost input(s) from {path}: 13 new, 0 changed, 0 removed, 0 unchanged")
    assert cli.main(["costs", "load", "--file", str(path)]) == 0
    assert capsys.readouterr().out.strip().endswith("0 new, 0 changed, 0 removed, 13 unchanged")
    assert cli.main(["costs", "show"]) == 0
    out = capsys.readouterr().out
    lines = [[c.strip() for c in line.split(" | ")] for line in out.splitlines()]
    assert ["aws-eks", "2026-06-01", "-", "0.9282",
            "control_plane: 1 x $0.1/h, cpu_node: 2 x $0.0416/h, gpu_node: 1 x $0.7/h, nat_gateway: 1 x $0.045/h"] \
        in lines
    assert ["aws-eks", "2026-01-30", "2026-06-01", "1.0330"] == lines[lines.index(
        next(line for line in lines if line[:2] == ["aws-eks", "2026-01-30"]))][:4]
    assert ["aws-eks", "2026-01-30", "storage", "usd_per_gb_month", "0.08", "60", "4.80"] in lines
    assert ["local", "2026-01-01", "-", "0.0000", "machine: 1 x $0/h"] in lines
    assert cli.main(["costs", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert {(c["provider"], c["as_of"]) for c in shown["clusters"]} == {
        ("aws-eks", "2026-01-30"), ("aws-eks", "2026-06-01"), ("local", "2026-01-01")}


def test_cli_costs_load_reports_a_bad_file_in_one_line(database_url, tmp_path, monkeypatch, capsys):
    write(tmp_path, TARGETS_YAML, "targets.yaml")
    path = write(tmp_path, TWO_SETS.replace("aws-eks:", "aws-eksx:"), "prices.yaml")
    monkeypatch.setenv("RAGBENCH_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    assert cli.main(["costs", "load", "--file", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == (f"error: {path}: aws-eksx: unknown provider (the providers of config/targets.yaml: "
                   "akamai-lke, aws-eks, gcp-gke, generic, local)\n")


def test_freezing_every_unpriced_target_run_at_once(migrated, tmp_path):
    """What benchmarks/store_scale.py does after generating a history: price every target run that
    has no price yet, and leave the priced ones as they are."""
    load(migrated, tmp_path)
    priced = add_target_run(migrated, "aws-eks", "aws-eks", "2026-03-15T10:00:00+00:00")
    run_id = "run-bulk"
    loader.record_run(migrated, run_id, "rag_benchmark", "2026-07-01T10:00:00+00:00", "manual", {}, None)
    bulk = loader.upsert_target_run(migrated, run_id, "aws-eks", "kubernetes", "aws-eks", None, None, {},
                                    "2026-07-01T10:00:00+00:00")
    with migrated.begin() as conn:
        assert run_prices.freeze(conn) == 1
        assert run_prices.freeze(conn) == 0
    prices = {r["target_run_id"]: r["as_of"] for r in query(migrated, "SELECT * FROM target_run_prices")}
    assert prices == {priced: date(2026, 1, 30), bulk: date(2026, 6, 1)}
