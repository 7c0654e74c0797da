"""End to end: Airflow as a team runs it (`ragbench airflow up`), used the way its users use it.

One set of services (api-server, scheduler, dag-processor, triggerer; LocalExecutor; metadata in a
PostgreSQL database of its own) serves every test here, in order:

- the UI's trigger form in headless Chromium: a parameter set in the form reaches the run's conf,
  and a value the schema refuses is refused with the schema's message;
- the REST API v2: a bad conf is refused, a run triggered with a conf succeeds on the local target
  and its rows and scorecard are in the results store;
- the schedule: the scheduler creates the next scheduled run of a copy of rag_benchmark whose
  nightly cron is moved to the coming minute (it waits while the REST-triggered run executes);
- `down` stops every process `up` started.

The DAG folder is a temporary one holding a link to the real dags/rag_benchmark.py (and, later,
the schedule copy). RAGBENCH_UPDATE_SCREENSHOTS=1 also writes the screenshots of the trigger form
and of the finished run's grid to docs/images/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import pytest
import sqlalchemy as sa
import yaml

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "rag_benchmark"
PROBE_DAG_ID = "rag_benchmark_schedule_probe"
REQUESTS = 8
REST_CONF = {"targets": ["local"], "requests": REQUESTS, "concurrency": 2, "warmup_requests": 1, "max_tokens": 32,
             "ew_duration_s": 1, "ew_samples": 2}
RUN_TIMEOUT_S = 1500
API_TIMEOUT_S = 120  # a loaded 2-core machine can keep the api-server busy for tens of seconds
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = ROOT / "docs" / "images"


class Api:
    """The REST API v2 as a client uses it: a token from /auth/token, then bearer requests."""

    def __init__(self, url: str, username: str, password: str) -> None:
        token = httpx.post(f"{url}/auth/token", json={"username": username, "password": password},
                           timeout=API_TIMEOUT_S)
        assert token.status_code == 201, token.text
        self.http = httpx.Client(base_url=f"{url}/api/v2", timeout=API_TIMEOUT_S,
                                 headers={"Authorization": f"Bearer {token.json()['access_token']}"})

    def set_paused(self, dag_id: str, paused: bool) -> None:
        r = self.http.patch(f"/dags/{dag_id}", params={"update_mask": "is_paused"}, json={"is_paused": paused})
        assert r.status_code == 200, r.text

    def runs(self, dag_id: str) -> list[dict]:
        r = self.http.get(f"/dags/{dag_id}/dagRuns", params={"limit": 100})
        assert r.status_code == 200, r.text
        return r.json()["dag_runs"]

    def run(self, dag_id: str, run_id: str) -> dict:
        r = self.http.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}")
        assert r.status_code == 200, r.text
        return r.json()

    def trigger(self, dag_id: str, conf: dict) -> httpx.Response:
        return self.http.post(f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})


def _cli(env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "ragbench"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def _wait(what: str, check, timeout_s: float, every_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, pg_url_factory):
    from ragbench.pgserver import free_port

    base = tmp_path_factory.mktemp("af")  # short: Ray's socket paths under it must fit AF_UNIX's limit
    state, config, dags = base / "state", base / "config", base / "dags"
    config.mkdir()
    dags.mkdir()
    (config / "targets.yaml").write_text("default_targets: [local]\n"
                                         "targets:\n  - {name: local, kind: local, provider: local}\n")
    shipped = yaml.safe_load((ROOT / "config" / "costs.yaml").read_text())
    (config / "costs.yaml").write_text(yaml.safe_dump({"local": shipped["local"]}, sort_keys=False))
    (dags / "rag_benchmark.py").symlink_to(ROOT / "dags" / "rag_benchmark.py")
    results_url = pg_url_factory()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update({"RAGBENCH_DATABASE_URL": results_url, "RAGBENCH_AIRFLOW_DATABASE_URL": pg_url_factory(),
                "RAGBENCH_STATE_DIR": str(state), "RAGBENCH_CONFIG_DIR": str(config),
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5"})
    env.setdefault("RAGBENCH_WORKLOAD_PYTHON", str(ROOT / ".state" / "venv-workload" / "bin" / "python"))
    port = free_port()
    started = time.monotonic()
    up = _cli(env, "airflow", "up", "--port", str(port), timeout=600)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        up_seconds = time.monotonic() - started
        secrets = json.loads((state / "airflow-services" / "secrets.json").read_text())
        url = f"http://127.0.0.1:{port}"
        api = Api(url, "admin", secrets["admin_password"])
        _wait("rag_benchmark to be parsed",
              lambda: api.http.get(f"/dags/{DAG_ID}").status_code == 200, timeout_s=180)
        engine = sa.create_engine(results_url)
        yield {"env": env, "state": state, "dags": dags, "url": url, "api": api, "password": secrets["admin_password"],
               "up_stdout": up.stdout, "up_seconds": up_seconds, "engine": engine}
        engine.dispose()
    finally:
        _cli(env, "airflow", "down", timeout=120)
        for pid_file in (state / "run").glob("airflow-*.pid"):  # only if `down` could not
            try:
                os.killpg(int(pid_file.read_text()), 9)
            except (OSError, ValueError):
                pass


def _group_pids(state: Path) -> dict[str, int]:
    return {p.stem.removeprefix("airflow-"): int(p.read_text()) for p in (state / "run").glob("airflow-*.pid")}


def _processes(pgids: set[int]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) in pgids:
                found.append(proc)
        except (ProcessLookupError, PermissionError):
            pass
    return found


def test_up_prints_the_login_and_is_safe_to_run_again(airflow):
    assert f"Airflow is up: {airflow['url']}  (user admin, password {airflow['password']})" in airflow["up_stdout"]
    before = _group_pids(airflow["state"])
    assert set(before) == {"api-server", "scheduler", "dag-processor", "triggerer"}
    again = _cli(airflow["env"], "airflow", "up", timeout=120)
    assert again.returncode == 0, again.stderr
    assert "started" not in again.stdout  # nothing new started
    assert _group_pids(airflow["state"]) == before
    status = _cli(airflow["env"], "airflow", "status", timeout=60)
    assert status.returncode == 0 and status.stdout.count("running (pid") == 4, status.stdout
    print(f"airflow up (cold) took {airflow['up_seconds']:.1f} s")


def test_only_loopback_listens(airflow):
    procs = _processes(set(_group_pids(airflow["state"]).values()))
    listening = [c for p in procs for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]
    assert listening, "the api-server listens"
    assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
    assert {c.laddr.port for c in listening} == {int(airflow["url"].rsplit(":", 1)[1])}


def test_the_measure_pool_exists(airflow):
    r = airflow["api"].http.get("/pools/ragbench_measure")
    assert r.status_code == 200 and r.json()["slots"] == 1, r.text


# --- the UI ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, airflow):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(f"{airflow['url']}/auth/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", airflow["password"])
    page.click("button[type=submit]")
    page.get_by_test_id("nav-dags-link").wait_for()
    yield page
    context.close()


def _open_trigger_form(page, url: str):
    page.goto(f"{url}/dags/{DAG_ID}")
    page.get_by_test_id("trigger-dag-button").click()
    page.locator("input[name=element_requests]").wait_for()
    unpause = page.get_by_text(f"Unpause {DAG_ID} on trigger")
    # The DAG stays paused, so the run the form creates is queued and never starts the workload.
    if page.get_by_role("checkbox", name=f"Unpause {DAG_ID} on trigger").is_checked():
        unpause.click()
    assert not page.get_by_role("checkbox", name=f"Unpause {DAG_ID} on trigger").is_checked()


def test_ui_trigger_form_sets_a_parameter_of_the_run(airflow, page):
    api = airflow["api"]
    api.set_paused(DAG_ID, True)
    before = {r["dag_run_id"] for r in api.runs(DAG_ID)}
    _open_trigger_form(page, airflow["url"])
    requests = page.locator("input[name=element_requests]")
    requests.fill("5")
    requests.blur()
    if os.environ.get("RAGBENCH_UPDATE_SCREENSHOTS"):
        page.set_viewport_size({"width": 1400, "height": 1600})  # the dialog's title and first params
        page.screenshot(path=str(SCREENSHOTS / "airflow-trigger-form.png"))
    page.get_by_test_id("trigger-dag-submit").click()
    new = _wait("the run triggered from the form",
                lambda: [r for r in api.runs(DAG_ID) if r["dag_run_id"] not in before], timeout_s=60)
    assert len(new) == 1
    run = new[0]
    try:
        assert run["conf"]["requests"] == 5
        assert run["run_type"] == "manual" and run["state"] == "queued"
        # The run's page shows the conf it was triggered with.
        page.goto(f"{airflow['url']}/dags/{DAG_ID}/runs/{quote(run['dag_run_id'], safe='')}/details")
        page.locator(".view-line", has_text=re.compile(r'"requests":\s+5,')).first.wait_for()
    finally:
        r = api.http.delete(f"/dags/{DAG_ID}/dagRuns/{quote(run['dag_run_id'], safe='')}")
        assert r.status_code == 204, r.text


def test_ui_trigger_form_refuses_a_value_with_the_schemas_message(airflow, page):
    """slo_attainment_target is exclusiveMinimum 0: the form (which clamps only minimum/maximum)
    sends 0, and the dialog shows the schema's message; no run is created."""
    api = airflow["api"]
    before = {r["dag_run_id"] for r in api.runs(DAG_ID)}
    _open_trigger_form(page, airflow["url"])
    field = page.locator("input[name=element_slo_attainment_target]")
    field.fill("0")
    field.blur()
    page.get_by_test_id("trigger-dag-submit").click()
    page.get_by_text("0 is less than or equal to the minimum of 0").first.wait_for()
    assert page.get_by_role("dialog").is_visible()
    time.sleep(2)
    assert {r["dag_run_id"] for r in api.runs(DAG_ID)} == before


# --- the REST API ------------------------------------------------------------------------------

def test_rest_refuses_a_conf_the_schema_refuses(airflow):
    r = airflow["api"].trigger(DAG_ID, {**REST_CONF, "concurrency": 0})
    assert r.status_code == 400
    assert "0 is less than the minimum of 1" in r.json()["detail"]


@pytest.fixture(scope="module")
def rest_run(airflow) -> str:
    """rag_benchmark triggered through the REST API with a conf, as a client would: unpause, post."""
    api = airflow["api"]
    api.set_paused(DAG_ID, False)
    r = api.trigger(DAG_ID, REST_CONF)
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "queued" and r.json()["conf"] == REST_CONF
    return r.json()["dag_run_id"]


def test_the_scheduler_creates_the_next_scheduled_run(airflow, rest_run):
    """A copy of rag_benchmark whose nightly cron is moved to a minute about to come: the scheduler
    creates a scheduled run for exactly that time, when it comes (and none before). The run is
    then failed at once, before its first task can deploy anything."""
    api = airflow["api"]
    due = (datetime.now(timezone.utc) + timedelta(seconds=120)).replace(second=0, microsecond=0)  # 60-120 s away
    source = (ROOT / "dags" / "rag_benchmark.py").read_text()
    assert source.count('dag_id="rag_benchmark"') == 1 and source.count('schedule="0 2 * * *"') == 1
    copy = source.replace('dag_id="rag_benchmark"', f'dag_id="{PROBE_DAG_ID}"') \
                 .replace('schedule="0 2 * * *"', f'schedule="{due.minute} {due.hour} * * *"')
    (airflow["dags"] / f"{PROBE_DAG_ID}.py").write_text(copy)
    _wait("the copy to be parsed", lambda: api.http.get(f"/dags/{PROBE_DAG_ID}").status_code == 200, timeout_s=60)
    assert datetime.now(timezone.utc) < due - timedelta(seconds=5), "parsing took too long for this minute"
    api.set_paused(PROBE_DAG_ID, False)
    dag = api.http.get(f"/dags/{PROBE_DAG_ID}").json()
    assert datetime.fromisoformat(dag["next_dagrun_run_after"]) == due
    try:
        while datetime.now(timezone.utc) < due - timedelta(seconds=1):
            assert api.runs(PROBE_DAG_ID) == [], "a run before its time"
            time.sleep(1)
        runs = _wait("the scheduled run", lambda: api.runs(PROBE_DAG_ID), timeout_s=90, every_s=0.5)
        api.http.patch(f"/dags/{PROBE_DAG_ID}/dagRuns/{quote(runs[0]['dag_run_id'], safe='')}",
                       json={"state": "failed"})
        assert len(runs) == 1
        run = runs[0]
        assert run["run_type"] == "scheduled"
        assert datetime.fromisoformat(run["run_after"]) == due
        assert datetime.fromisoformat(run["queued_at"]) >= due
        print(f"scheduled run created {(datetime.fromisoformat(run['queued_at']) - due).total_seconds():.1f} s "
              f"after its time")
    finally:
        api.set_paused(PROBE_DAG_ID, True)


def test_unpausing_starts_no_missed_nightly_run(airflow, rest_run):
    """rag_benchmark was unpaused well over a minute ago (rest_run): the scheduler created no run
    for the last 02:00 it missed, and the next one is the coming 02:00."""
    runs = airflow["api"].runs(DAG_ID)
    assert [r["run_type"] for r in runs] == ["manual"], runs
    dag = airflow["api"].http.get(f"/dags/{DAG_ID}").json()
    next_run = datetime.fromisoformat(dag["next_dagrun_run_after"])
    assert (next_run.hour, next_run.minute) == (2, 0) and next_run > datetime.now(timezone.utc)


def test_the_rest_triggered_run_succeeds_and_its_results_are_stored(airflow, rest_run):
    api = airflow["api"]
    run = _wait("the REST-triggered run to finish",
                lambda: (r := api.run(DAG_ID, rest_run))["state"] in ("success", "failed") and r,
                timeout_s=RUN_TIMEOUT_S, every_s=5)
    assert run["state"] == "success", run
    with airflow["engine"].connect() as conn:
        target = conn.execute(sa.text("SELECT t.status, r.params FROM target_runs t JOIN runs r USING (run_id) "
                                      "WHERE run_id = :r AND t.target = 'local'"), {"r": rest_run}).mappings().one()
        measured = conn.execute(sa.text(
            "SELECT count(*) FROM ns_requests q JOIN target_runs t USING (target_run_id) "
            "WHERE t.run_id = :r AND NOT q.warmup AND q.error_code IS NULL"), {"r": rest_run}).scalar()
        scorecard = conn.execute(sa.text("SELECT * FROM v_scorecard WHERE run_id = :r"),
                                 {"r": rest_run}).mappings().one()
    assert target["status"] == "succeeded"
    assert target["params"]["concurrency"] == 2 and target["params"]["requests"] == REQUESTS
    assert measured == REQUESTS
    assert scorecard["ttft_p50_ms"] > 0 and scorecard["east_west_gbps"] > 0
    printed = _cli(airflow["env"], "scorecard", "--run-id", rest_run, timeout=120)
    assert printed.returncode == 0, printed.stderr
    line = next(x for x in printed.stdout.splitlines() if x.startswith("local "))
    assert "succeeded" in line and f"{REQUESTS}/{REQUESTS}" in line


def test_the_finished_runs_grid(airflow, rest_run, page):
    page.goto(f"{airflow['url']}/dags/{DAG_ID}/runs/{quote(rest_run, safe='')}")
    page.get_by_test_id("task-report_scorecard").first.wait_for()
    page.get_by_text("success").first.wait_for()
    if os.environ.get("RAGBENCH_UPDATE_SCREENSHOTS"):
        page.screenshot(path=str(SCREENSHOTS / "airflow-run-grid.png"))


def test_down_stops_every_process_it_started(airflow):
    pgids = set(_group_pids(airflow["state"]).values())
    assert _processes(pgids)
    down = _cli(airflow["env"], "airflow", "down", timeout=120)
    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith("stopped: ")
    _wait("every process to exit", lambda: not _processes(pgids), timeout_s=30)
    status = _cli(airflow["env"], "airflow", "status", timeout=60)
    assert status.returncode == 3 and status.stdout.count("stopped") == 4
