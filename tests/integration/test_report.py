"""The run report against a real PostgreSQL: result documents shaped like the workload's (a swept
cluster target, a failed one) go in through the loader, and report.html / scorecard.csv come out."""

from __future__ import annotations

import csv
import html
import io
import re
from html.parser import HTMLParser

import pytest
import sqlalchemy as sa

from ragbench import cli, costs, db, loader, pipeline, report
from ragbench.errors import RagbenchError
from ragbench.paths import results_dir
from workload.bench.metrics import SLO, summarize
from workload.bench.northsouth import NorthSouthConfig, SweepStrategy, _mark_headline
from workload.bench.records import RequestRecord
from workload.eastwest import latency
from workload.eastwest.iperf import TcpSample, UdpSample, summarize_samples, summarize_udp
from workload.eastwest.latency import LatencySample
from workload.eastwest.probe import placement
from workload.results import result_document

pytestmark = pytest.mark.integration

RUN_ID = "manual__2026-11-27T10:00:00+00:00"
STARTED = "2026-11-27T10:00:00.000+00:00"
PARAMS = {"targets": ["aws-eks", "gcp-gke"], "load_mode": "sweep", "sweep_levels": [1, 2, 4], "requests": 12,
          "slo_attainment_target": 0.95, "slo_ttft_ms": 300, "slo_tpot_ms": 50}
SLO_LIMITS = SLO(ttft_ms=300, tpot_ms=50)
GKE_ERROR = "north_south on gcp-gke failed: connect_error: <LB 10.0.0.7> refused the connection & gave up"
CHART_SECTIONS = ("percentiles", "distribution", "cost", "sweep", "east-west")


# --- result documents, built with the workload's own code -------------------------------------------


def level_records(concurrency: int, scenario: str | None = None, n: int = 12) -> list[RequestRecord]:
    """One warm-up and n measured requests; TTFT grows with the load, as on a real server. At
    concurrency 4 every third request misses the TTFT SLO (300 ms), and one fails."""
    out = []
    for i in range(n + 1):
        t0 = i * 0.5
        ttft = 0.05 * concurrency + 0.01 * (i % 5) + (0.25 if concurrency == 4 and i % 3 == 0 else 0)
        tokens = [t0 + ttft + 0.02 * k for k in range(16)]  # TPOT 20 ms
        rec = RequestRecord(index=i, scenario=scenario or f"sweep-concurrent-{concurrency}", prompt_id=f"q{i:04d}",
                            prompt_chars=60, warmup=i == 0, t_sent=t0, t_first_byte=t0 + ttft / 2,
                            t_first_token=tokens[0], token_times=tokens, t_end=tokens[-1] + 0.005,
                            http_status=200, request_id=f"r{concurrency}-{i}", replica_id="pod-a",
                            output_tokens=16, output_tokens_source="server_usage",
                            server_timings={"ttft_ms": ttft * 900})
        if concurrency == 4 and i == 5:
            rec.error_code, rec.error_message = "total_timeout", "no done event within 300 s"
        out.append(rec)
    return out


def sweep_north_south() -> dict:
    config = NorthSouthConfig(strategy=SweepStrategy(levels=[1, 2, 4]), slo={"ttft_ms": 300, "tpot_ms": 50})
    scenarios = []
    for i, c in enumerate((1, 2, 4)):
        records = level_records(c)
        summary = summarize(records, wall_time_s=6.5, slo=SLO_LIMITS).model_dump(mode="json")
        summary["stopped_by"] = "max_requests"
        summary["meets_slo_target"] = summary["slo_attainment"] >= 0.95
        scenarios.append({"scenario": f"sweep-concurrent-{c}", "started_at_epoch": 1795773600.0 + 10 * i,
                          "summary": summary, "strategy": {"type": "concurrent", "concurrency": c},
                          "records": [r.to_dict() for r in records]})
    data = {"endpoint": "http://203.0.113.10", "config": config.model_dump(), "scenarios": scenarios}
    _mark_headline(data, config)
    return result_document("north-south", data, started_at=STARTED)


def lat(p50: float, p99: float) -> LatencySample:
    return LatencySample(1000, 32, False, p50, p50 * 1.5, p99, p50 * 1.1, p50 / 2, p99 * 3, 0.2)


def east_west() -> dict:
    tcp = [TcpSample(9.1, 12, 0.41, 10.0, 4, False), TcpSample(9.4, 8, 0.39, 10.0, 4, False),
           TcpSample(9.3, 10, 0.40, 10.0, 4, False)]
    rev = [TcpSample(8.8, 5, None, 10.0, 4, True), TcpSample(9.0, 7, None, 10.0, 4, True),
           TcpSample(8.9, 6, None, 10.0, 4, True)]
    udp = [UdpSample(0.099, 0.1, 0.02, 0.1, 10, 10000, 3.0, 10**8, 1448),
           UdpSample(0.098, 0.1, 0.04, 0.3, 30, 10000, 3.0, 10**8, 1448)]
    data = placement("ip-10-0-1-5", "ip-10-0-2-9", "pod-network") | {
        "duration_s": 10.0, "streams": 4, "samples": 3, "probes": ["tcp", "tcp_reverse", "udp", "latency"],
        "udp_rate": "100M", "errors": {}, "tcp": summarize_samples(tcp), "tcp_reverse": summarize_samples(rev),
        "udp": summarize_udp(udp, "100M"), "latency": latency.summarize_samples([lat(0.31, 0.9), lat(0.33, 1.1)])}
    return result_document("east-west", data, started_at=STARTED)


def deploy(endpoint: str) -> dict:
    return result_document("deploy-cluster", {"endpoint": endpoint, "model_id": "Qwen/Qwen2.5-1.5B-Instruct",
                                              "timings": {"rollout_s": 212.0}}, started_at=STARTED)


def ingest() -> dict:
    return result_document("ingest", {"documents": 12, "chunks": 96, "bytes": 123456, "files": 12, "seconds": 4.0,
                                      "chunks_per_s": 24.0, "stage_ms": {"embed_ms": 3500.0}, "store_documents": 96},
                           started_at=STARTED)


def failed_north_south() -> dict:
    return result_document("north-south", {}, started_at=STARTED, ok=False, error=GKE_ERROR)


# --- seeding and reading back ---------------------------------------------------------------------


def seed(engine, params: dict) -> dict:
    """RUN_ID: aws-eks swept the load and succeeded; gcp-gke (when params names it) failed in north_south
    and east_west. Returns aws-eks's north-south document."""
    db.migrate(engine)
    costs.store(engine, costs.load_costs())  # the checked-in prices: aws-eks is priced on 2026-11-27
    loader.record_run(engine, RUN_ID, "rag_benchmark", STARTED, "manual", params, "0123456789abcdef")
    ns = sweep_north_south()
    eks = loader.upsert_target_run(engine, RUN_ID, "aws-eks", "kubernetes", "aws-eks", "us-east-1", None, {},
                                   STARTED)
    for doc in (deploy("http://203.0.113.10"), ingest(), ns, east_west()):
        loader.load_document(engine, eks, doc)
    loader.finish_target_run(engine, eks, [], None)
    if "gcp-gke" not in params["targets"]:
        return ns
    gke = loader.upsert_target_run(engine, RUN_ID, "gcp-gke", "kubernetes", "gcp-gke", "us-central1", None, {},
                                   STARTED)
    for doc in (deploy("http://198.51.100.4"), ingest(), failed_north_south()):
        loader.load_document(engine, gke, doc)
    loader.finish_target_run(engine, gke, ["north_south", "east_west"], GKE_ERROR)
    return ns


@pytest.fixture
def seeded(engine):
    return engine, seed(engine, PARAMS)


def view_rows(engine, run_id: str = RUN_ID) -> tuple[list[str], list[dict]]:
    with engine.connect() as conn:
        result = conn.execute(sa.text("SELECT * FROM v_scorecard WHERE run_id = :r ORDER BY target"), {"r": run_id})
        return list(result.keys()), [dict(r) for r in result.mappings()]


class Page(HTMLParser):
    """The sections of a report: their text, and the rows of their tables as lists of cell texts."""

    def __init__(self, text: str):
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: dict | None = None
        self.cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.current = self.sections.setdefault(attrs["id"], {"text": [], "rows": [], "svgs": 0})
        elif self.current is not None:
            if tag == "tr":
                self.current["rows"].append([])
            elif tag in ("td", "th"):
                self.cell = []
            elif tag == "svg":
                self.current["svgs"] += 1

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None
        elif tag in ("td", "th") and self.current is not None and self.cell is not None:
            self.current["rows"][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"].append(data)
            if self.cell is not None:
                self.cell.append(data)

    def text(self, section: str) -> str:
        return " ".join(" ".join(self.sections[section]["text"]).split())

    def rows(self, section: str) -> list[list[str]]:
        return self.sections[section]["rows"]


def parse_csv_value(text: str, like):
    """A CSV cell back into the type of the view's value (independent of report.csv_value)."""
    if like is None:
        return None if text == "" else text
    if isinstance(like, bool):
        return {"true": True, "false": False}[text]
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        return float(text)
    if isinstance(like, list):
        return text.split(";") if text else []
    if hasattr(like, "isoformat"):
        return type(like).fromisoformat(text)
    return text


# --- the tests ------------------------------------------------------------------------------------


def test_both_files_are_written_in_the_runs_results_folder(seeded, tmp_path, monkeypatch):
    engine, _ = seeded
    monkeypatch.setenv("RAGBENCH_STATE_DIR", str(tmp_path / "state"))
    files = report.write_report(engine, RUN_ID)
    folder = results_dir(RUN_ID, "aws-eks").parent  # next to the targets' result documents
    assert (files.html, files.csv) == (folder / "report.html", folder / "scorecard.csv")
    assert files.html.stat().st_size > 10_000 and files.csv.stat().st_size > 0
    assert not list(folder.glob("*.tmp"))


def test_csv_is_v_scorecard_one_row_per_target(seeded, tmp_path):
    engine, _ = seeded
    files = report.write_report(engine, RUN_ID, tmp_path)
    columns, rows = view_rows(engine)
    table = list(csv.reader(io.StringIO(files.csv.read_text())))
    assert table[0] == columns
    assert {"target", "status", "error", "ttft_p95_ms", "tpot_p50_ms", "output_tokens_per_s", "east_west_gbps",
            "usd_per_hour", "usd_per_1m_output_tokens", "usd_per_1k_requests"} <= set(columns)
    assert [line[0:2] for line in table[1:]] == [[RUN_ID, "aws-eks"], [RUN_ID, "gcp-gke"]]
    for line, row in zip(table[1:], rows, strict=True):
        assert {c: parse_csv_value(v, row[c]) for c, v in zip(columns, line, strict=True)} == row
    eks, gke = rows
    assert eks["usd_per_hour"] > 0 and eks["scenario"] == "sweep-concurrent-2"  # priced; the operating point
    assert gke["status"] == "failed" and gke["ttft_p50_ms"] is None and gke["error"] == GKE_ERROR


def test_html_has_every_section_and_chart_and_is_self_contained(seeded, tmp_path):
    engine, ns = seeded
    text = report.write_report(engine, RUN_ID, tmp_path).html.read_text()
    page = Page(text)
    assert list(page.sections) == list(report.SECTIONS)
    for section in CHART_SECTIONS:
        assert page.sections[section]["svgs"] == 1, section
    # Nothing is fetched: no URL at all, no scripts, no external style sheets, fonts or images.
    assert "http://" not in text and "https://" not in text
    for needle in ("<script", "<link", "<img", "<iframe", "<object", "<embed", "@import"):
        assert needle not in text.lower(), needle
    # in-page references only: the navigation's anchors, the charts' markers and clip paths
    assert all(ref.startswith("#") for ref in re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", text))
    assert not re.search(r"""(?:src|href)\s*=\s*[^"'\s]""", text)
    assert all(ref.startswith("#") for ref in re.findall(r"""url\(\s*["']?([^)"']*)""", text))
    # the latency distribution is drawn from the headline scenario's successful measured records
    headline = next(s for s in ns["data"]["scenarios"] if s["headline"])
    ok = [r for r in headline["records"] if not r["warmup"] and r["error_code"] is None]
    assert f"aws-eks (n={len(ok)})" in text
    assert "gcp-gke" in page.text("percentiles")  # named as having no North-South result


def test_html_scorecard_table_shows_the_view(seeded, tmp_path):
    engine, _ = seeded
    page = Page(report.write_report(engine, RUN_ID, tmp_path).html.read_text())
    header, *body = page.rows("scorecard")
    assert header == [h for h, _, _ in report.TABLE_COLUMNS]
    _, (eks, gke) = view_rows(engine)
    cells = dict(zip(header, body[0], strict=True))
    assert cells["target"] == "aws-eks" and cells["status"] == "succeeded"
    assert cells["ok/req"] == f"{eks['completed']}/{eks['requests']}"
    # every figure with a bootstrap interval shows it; a low-confidence percentile carries a "*"
    mark = "*" if "ttft_p95_ms" in eks["low_confidence"] else ""
    assert cells["TTFT p95 ms [95% CI]"] == \
        f"{eks['ttft_p95_ms']:.1f} [{eks['ttft_p95_ms_lo']:.1f}, {eks['ttft_p95_ms_hi']:.1f}]{mark}"
    assert cells["out tok/s"] == (f"{eks['output_tokens_per_s']:.1f} [{eks['output_tokens_per_s_lo']:.1f}, "
                                  f"{eks['output_tokens_per_s_hi']:.1f}]")
    assert cells["E-W Gbit/s"] == f"{eks['east_west_gbps']:.2f}"
    assert cells["$/1M tok"] == f"{eks['usd_per_1m_output_tokens']:.3f}"
    assert cells["$/hour"] == f"{eks['usd_per_hour']:.4f}"
    failed = dict(zip(header, body[1], strict=True))
    assert (failed["target"], failed["status"], failed["TTFT p50 ms [95% CI]"], failed["$/1M tok"]) == \
        ("gcp-gke", "failed", "-", "-")


def test_failed_target_and_its_error_are_shown(seeded, tmp_path):
    engine, _ = seeded
    page = Page(report.write_report(engine, RUN_ID, tmp_path).html.read_text())
    assert page.rows("failed")[1:] == [["gcp-gke", "north_south, east_west", GKE_ERROR]]
    assert "No East-West result: gcp-gke" in page.text("east-west")


def test_sweep_curve_marks_the_operating_point(seeded, tmp_path):
    engine, ns = seeded
    page = Page(report.write_report(engine, RUN_ID, tmp_path).html.read_text())
    sweep = ns["data"]["sweep"]
    assert sweep["levels_run"] == [1, 2, 4] and sweep["operating_point_concurrency"] == 2
    rows = page.rows("sweep")[1:]
    assert [r[1] for r in rows] == ["1", "2", "4"]
    assert [r[-1] for r in rows] == ["", "operating point", ""]
    for row, point in zip(rows, sweep["curve"], strict=True):
        assert row[2] == f"{point['slo_attainment']:.1%}" and row[5].startswith(f"{point['ttft_p95_ms']:.1f} [")
    assert "operating point" in page.text("sweep")


def test_a_sweep_without_an_operating_point_says_so_and_prices_nothing(engine, tmp_path):
    db.migrate(engine)
    costs.store(engine, costs.load_costs())
    loader.record_run(engine, RUN_ID, "rag_benchmark", STARTED, "manual", {**PARAMS, "targets": ["aws-eks"]}, None)
    ns = sweep_north_south()
    for sc in ns["data"]["scenarios"]:  # a stricter SLO: no level meets it
        sc["summary"]["meets_slo_target"] = False
        sc["headline"] = sc["scenario"] == "sweep-concurrent-1"
        sc["operating_point"] = False
    eks = loader.upsert_target_run(engine, RUN_ID, "aws-eks", "kubernetes", "aws-eks", "us-east-1", None, {}, STARTED)
    loader.load_document(engine, eks, ns)
    loader.finish_target_run(engine, eks, [], None)
    page = Page(report.write_report(engine, RUN_ID, tmp_path).html.read_text())
    assert "aws-eks: sweep: no level met the SLO (no operating point, not priced)" in page.text("scorecard")
    cells = dict(zip(page.rows("scorecard")[0], page.rows("scorecard")[1], strict=True))
    assert cells["$/1M tok"] == "-" and cells["$/hour"] != "-"  # priced per hour, nothing as the operating point
    assert [r[-1] for r in page.rows("sweep")[1:]] == ["no level met the SLO (shown, not priced)", "", ""]


def test_east_west_shows_each_probe_with_its_interval(seeded, tmp_path):
    engine, _ = seeded
    page = Page(report.write_report(engine, RUN_ID, tmp_path).html.read_text())
    rows = {r[1]: r for r in page.rows("east-west")[1:]}
    assert set(rows) == {"tcp", "tcp_reverse", "udp", "latency"}
    with engine.connect() as conn:
        tcp = conn.execute(sa.text("SELECT * FROM ew_results WHERE probe = 'tcp'")).mappings().one()
    assert rows["tcp"][3] == f"{tcp['throughput_gbps']:.3g} Gbit/s"
    assert rows["tcp"][4] == f"{tcp['throughput_ci95_low_gbps']:.3g} .. {tcp['throughput_ci95_high_gbps']:.3g}"
    assert rows["tcp"][5] == "pod-network (cross-node)"


def test_a_run_id_that_does_not_exist_is_a_clear_error(seeded, tmp_path):
    engine, _ = seeded
    with pytest.raises(RagbenchError, match=r"no run 'manual__nope' in the results database \(the newest run is"):
        report.write_report(engine, "manual__nope", tmp_path)
    assert not list(tmp_path.iterdir())


def test_target_without_north_south_cost_or_east_west(engine, tmp_path):
    """A run that predates every price set, one target with one scenario and no East-West step, and a
    target the run asked for that loaded nothing."""
    db.migrate(engine)
    run_id, started = "scheduled__2025-06-01T02:00:00+00:00", "2025-06-01T02:00:00+00:00"
    loader.record_run(engine, run_id, "rag_benchmark", started, "scheduled", {"targets": ["local", "akamai-lke"]},
                      None)
    trid = loader.upsert_target_run(engine, run_id, "local", "local", "local", None, None, {}, started)
    records = level_records(4, "concurrent-4")
    summary = summarize(records, wall_time_s=6.5, slo=SLO_LIMITS).model_dump(mode="json")
    doc = result_document("north-south", {
        "endpoint": "http://127.0.0.1:18000", "config": NorthSouthConfig().model_dump(),
        "scenarios": [{"scenario": "concurrent-4", "started_at_epoch": 1748743200.0, "summary": summary,
                       "headline": True, "strategy": {"type": "concurrent", "concurrency": 4},
                       "records": [r.to_dict() for r in records]}]}, started_at=started)
    loader.load_document(engine, trid, doc)
    loader.finish_target_run(engine, trid, [], None)
    files = report.write_report(engine, run_id, tmp_path)
    page = Page(files.html.read_text())
    assert page.sections["percentiles"]["svgs"] == page.sections["distribution"]["svgs"] == 1
    for section in ("cost", "sweep", "east-west"):
        assert page.sections[section]["svgs"] == 0, section
    assert "Not priced: local" in page.text("cost")
    assert "did not sweep" in page.text("sweep")
    assert "No East-West result: akamai-lke, local" in page.text("east-west")
    assert page.rows("failed")[1] == ["akamai-lke", "-", "no results were loaded for this target"]
    assert len(files.csv.read_text().splitlines()) == 2  # the header and the one target run


def test_pipeline_report_writes_the_report_before_failing(seeded, database_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RAGBENCH_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(RagbenchError, match="targets failed: gcp-gke") as err:
        pipeline.report(RUN_ID, PARAMS)
    html_path = results_dir(RUN_ID, "x").parent / "report.html"
    assert str(html_path) in str(err.value)
    assert html.escape(GKE_ERROR) in html_path.read_text()
    assert (html_path.parent / "scorecard.csv").exists()
    assert "gcp-gke FAILED" in capsys.readouterr().out  # the scorecard is printed first


def test_pipeline_report_returns_the_files(engine, database_url, tmp_path, monkeypatch):
    params = {**PARAMS, "targets": ["aws-eks"]}
    seed(engine, params)
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RAGBENCH_STATE_DIR", str(tmp_path / "state"))
    out = pipeline.report(RUN_ID, params)
    folder = results_dir(RUN_ID, "aws-eks").parent
    assert (out["report_html"], out["scorecard_csv"]) == (str(folder / "report.html"), str(folder / "scorecard.csv"))
    assert (folder / "report.html").exists() and (folder / "scorecard.csv").exists()
    assert [(r["target"], r["status"]) for r in out["scorecard"]] == [("aws-eks", "succeeded")]


def test_cli_report(seeded, database_url, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    assert cli.main(["report", RUN_ID, "--out-dir", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.splitlines() == [f"report: {tmp_path / 'a' / 'report.html'}",
                                                    f"scorecard CSV: {tmp_path / 'a' / 'scorecard.csv'}"]
    assert cli.main(["report", "--latest", "--out-dir", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "report.html").read_text().count(RUN_ID) >= 1
    assert cli.main(["report", "manual__nope"]) == 1
    assert capsys.readouterr().err.startswith("error: no run 'manual__nope' in the results database")
    assert cli.main(["report"]) == 1
    assert "--latest" in capsys.readouterr().err


def test_cli_run_prints_the_report_path_after_the_scorecard(seeded, database_url, tmp_path, monkeypatch, capsys):
    """`ragbench run` with Airflow stood in for (the DAG run itself is tests/e2e): the run's
    scorecard, then its report, written into the run's results folder."""
    from ragbench import local_run

    monkeypatch.setenv("RAGBENCH_DATABASE_URL", database_url)
    monkeypatch.setenv("RAGBENCH_STATE_DIR", str(tmp_path / "state"))
    calls = []
    monkeypatch.setattr(local_run, "run_dag", lambda conf_json, env, verbose, out=print: calls.append(conf_json)
                        or local_run.RunOutcome(1, RUN_ID, {"report_scorecard": "failed"}, None))
    assert cli.main(["run", "--targets", "aws-eks", "gcp-gke"]) == 1  # gcp-gke failed
    assert calls == ['{"targets": ["aws-eks", "gcp-gke"]}']
    out = capsys.readouterr().out
    folder = results_dir(RUN_ID, "aws-eks").parent
    scorecard_at = out.index("=== scorecard ===")
    assert out.index(f"report: {folder / 'report.html'}") > scorecard_at
    assert f"scorecard CSV: {folder / 'scorecard.csv'}" in out
    assert html.escape(GKE_ERROR) in (folder / "report.html").read_text()
