"""The result document (workload/results.py) and the workload CLI's failure contract (workload/cli.py)."""

from __future__ import annotations

import json
import os
import socket
import stat
import threading
from datetime import datetime
from pathlib import Path

import pytest

from workload import results
from workload.cli import main
from workload.eastwest.iperf import IPERF3_MISSING

pytestmark = pytest.mark.unit

FIXTURE = Path(__file__).parent / "fixtures" / "iperf3_tcp.json"


# --------------------------------------------------------------------------- results


def test_result_document_shape():
    doc = results.result_document("ingest", {"chunks": 3}, started_at="2026-11-27T10:00:00.000+00:00")
    assert doc["schema"] == "ragbench.result/v1" == results.SCHEMA
    assert doc["step"] == "ingest"
    assert doc["ok"] is True
    assert doc["error"] is None
    assert doc["started_at"] == "2026-11-27T10:00:00.000+00:00"
    assert doc["host"] == socket.gethostname()
    assert doc["data"] == {"chunks": 3}
    finished = datetime.fromisoformat(doc["finished_at"])
    assert finished.tzinfo is not None  # UTC, with offset
    assert set(doc) == {"schema", "step", "ok", "error", "started_at", "finished_at", "host", "data"}


def test_failed_result_document():
    doc = results.result_document("east-west", {}, started_at=results.now_iso(), ok=False, error="boom")
    assert (doc["ok"], doc["error"], doc["data"]) == (False, "boom", {})


def test_write_document_is_atomic_and_leaves_no_tmp(tmp_path):
    out = tmp_path / "deep" / "er" / "ingest.json"  # parent folders are created
    doc = results.result_document("ingest", {"path": Path("/x")}, started_at=results.now_iso())
    results.write_document(doc, out)
    assert json.loads(out.read_text()) == {**doc, "data": {"path": "/x"}}  # non-JSON values as str
    assert sorted(p.name for p in out.parent.iterdir()) == ["ingest.json"]  # no ingest.json.tmp


def test_write_document_replaces_an_existing_file(tmp_path):
    out = tmp_path / "x.json"
    out.write_text('{"old": true, "padding": "' + "x" * 1000 + '"}')
    results.write_document({"new": 1}, out)
    assert json.loads(out.read_text()) == {"new": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_write_document_writes_into_a_pipe_without_replacing_it(tmp_path):
    """`--out /dev/null` once replaced the device with a regular file (an atomic rename onto it).
    A FIFO stands in for the device here: it is written to and stays a FIFO."""
    out = tmp_path / "pipe"
    os.mkfifo(out)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(out.read_bytes()), daemon=True)
    reader.start()
    results.write_document({"new": 1}, out)
    reader.join(timeout=10)
    assert not reader.is_alive()
    assert json.loads(received[0]) == {"new": 1}
    assert stat.S_ISFIFO(os.stat(out).st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe"]


def test_write_document_failure_keeps_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "x.json"
    out.write_text('{"old": true}')
    original_write_text = Path.write_text

    def half_write(self, text, *a, **kw):  # the disk fills up half way through
        original_write_text(self, text[: len(text) // 2], *a, **kw)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_write)
    with pytest.raises(OSError):
        results.write_document({"new": "y" * 100}, out)
    monkeypatch.undo()
    assert json.loads(out.read_text()) == {"old": True}  # never a half-written document


@pytest.mark.parametrize("out", [None, "-"])
def test_write_document_to_stdout(out, capsys):
    results.write_document({"a": 1}, out)
    assert capsys.readouterr().out == '{"a":1}\n'


# --------------------------------------------------------------------------- cli


def run_cli(argv, capsys):
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def assert_failed_document(path: Path, step: str, message: str) -> None:
    doc = json.loads(path.read_text())
    assert doc["schema"] == "ragbench.result/v1"
    assert doc["step"] == step
    assert doc["ok"] is False
    assert doc["error"] == message
    assert doc["data"] == {}


def test_ingest_empty_corpus(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "image.png").write_bytes(b"\x89PNG")  # not a corpus file type
    out = tmp_path / "x.json"
    rc, stdout, stderr = run_cli(["ingest", "--endpoint", "http://127.0.0.1:9", "--corpus", str(corpus),
                                  "--out", str(out)], capsys)
    message = f"corpus folder {corpus} is empty: no .htm, .html, .md, .pdf, .txt files"
    assert rc == 1
    assert stderr == f"error: {message}\n"  # one line, no traceback
    assert stdout == ""
    assert_failed_document(out, "ingest", message)


def test_ingest_missing_corpus(tmp_path, capsys):
    out = tmp_path / "x.json"
    rc, _, stderr = run_cli(["ingest", "--endpoint", "http://127.0.0.1:9", "--corpus",
                             str(tmp_path / "nope"), "--out", str(out)], capsys)
    assert rc == 1
    assert stderr == f"error: corpus folder {tmp_path / 'nope'} does not exist\n"
    assert_failed_document(out, "ingest", f"corpus folder {tmp_path / 'nope'} does not exist")


def test_ingest_unreachable_endpoint(tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("# A\n\nsome text\n")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "x.json"
    rc, _, stderr = run_cli(["ingest", "--endpoint", f"http://127.0.0.1:{port}", "--corpus", str(corpus),
                             "--out", str(out)], capsys)
    assert rc == 1
    assert stderr.startswith(f"error: could not reach http://127.0.0.1:{port}/ingest: ConnectError")
    assert stderr.count("\n") == 1
    doc = json.loads(out.read_text())
    assert doc["ok"] is False and doc["error"] == stderr[len("error: "):-1]


def test_east_west_without_iperf3(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    out = tmp_path / "x.json"
    rc, _, stderr = run_cli(["east-west", "--server", "127.0.0.1", "--port", "9", "--out", str(out)], capsys)
    assert rc == 1
    assert stderr == f"error: {IPERF3_MISSING}\n"
    assert_failed_document(out, "east-west", IPERF3_MISSING)


def test_failed_document_to_stdout(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    rc, stdout, stderr = run_cli(["east-west", "--server", "127.0.0.1", "--port", "9"], capsys)
    assert rc == 1
    assert stderr == f"error: {IPERF3_MISSING}\n"
    doc = json.loads(stdout)
    assert (doc["step"], doc["ok"], doc["error"]) == ("east-west", False, IPERF3_MISSING)


def test_east_west_success_with_a_fake_iperf3(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "iperf3"
    script.write_text(f"#!/bin/sh\ncat {FIXTURE}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "ew.json"
    rc, _, stderr = run_cli(["east-west", "--server", "10.0.0.2", "--port", "5201", "--samples", "2",
                             "--client-node", "node-a", "--server-node", "node-b", "--out", str(out)], capsys)
    assert (rc, stderr) == (0, "")
    doc = json.loads(out.read_text())
    assert doc["ok"] is True and doc["error"] is None and doc["step"] == "east-west"
    data = doc["data"]
    assert (data["client_node"], data["server_node"], data["cross_node"], data["flags"]) == \
        ("node-a", "node-b", True, [])
    assert data["tcp"]["throughput_gbps"]["mean"] == pytest.approx(18.75)
    assert data["tcp"]["throughput_gbps"]["n"] == 2
    assert data["tcp_reverse"]["samples"][0]["reverse"] is True


def test_east_west_remote_without_node_names_fails_cleanly(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "iperf3"
    script.write_text(f"#!/bin/sh\ncat {FIXTURE}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("NODE_NAME", raising=False)
    out = tmp_path / "ew.json"
    rc, _, stderr = run_cli(["east-west", "--server", "10.0.0.2", "--samples", "1", "--out", str(out)], capsys)
    assert rc == 1
    assert stderr == "error: client and server node names are required to record placement\n"
    assert json.loads(out.read_text())["ok"] is False


@pytest.mark.parametrize("config", ["{not json", '{"strategy": {"type": "bogus"}}', '{"stop": {"max_requests": 0}}'])
def test_north_south_bad_config_fails_cleanly(tmp_path, capsys, config):
    out = tmp_path / "ns.json"
    rc, _, stderr = run_cli(["north-south", "--endpoint", "http://127.0.0.1:9", "--config", config,
                             "--out", str(out)], capsys)
    assert rc == 1
    assert stderr.startswith("error: ") and stderr.count("\n") == 1
    doc = json.loads(out.read_text())
    assert doc["ok"] is False and doc["step"] == "north-south"


@pytest.mark.parametrize(("args", "message"), [
    (["--shard", "2/2", "--start-at", "1"], "error: bad --shard '2/2': I must be in 0..N-1\n"),
    (["--shard", "one/2", "--start-at", "1"], "error: bad --shard 'one/2': expected I/N, e.g. 0/4\n"),
    (["--shard", "0/2"], "error: --shard needs --start-at EPOCH: the shards start together at that instant\n"),
    (["--start-at", "1"], "error: --start-at goes with --shard I/N\n"),
    (["--shard", "0/8", "--start-at", "1", "--config", '{"strategy": {"type": "concurrent", "concurrency": 4}}'],
     "error: 8 shards for concurrency 4: a closed loop cannot be split into more shards (client pods) than "
     "requests in flight\n"),
    (["--workers", "5", "--config", '{"strategy": {"type": "concurrent", "concurrency": 4}}'],
     "error: 5 workers for 4 requests in flight (concurrency 4): a closed loop cannot be split into more "
     "workers than requests in flight\n"),
])
def test_north_south_bad_shard_or_workers_fail_cleanly(tmp_path, capsys, args, message):
    out = tmp_path / "ns.json"
    rc, _, stderr = run_cli(["north-south", "--endpoint", "http://127.0.0.1:9", "--no-telemetry", "--out", str(out),
                             *args], capsys)
    assert (rc, stderr) == (1, message)
    assert json.loads(out.read_text())["ok"] is False


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["no-such-step"])
    assert info.value.code == 2
