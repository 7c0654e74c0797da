"""Client-minus-server TTFT (joined by request_id) and the network round trip (TCP connect samples).

Hand-computed values on binary-fraction timestamps, as in test_metrics.py.
"""

from __future__ import annotations

import json
import socket
import threading

import pytest

from workload.bench.endpoints import FINISHED, RagStreamEndpoint
from workload.bench.metrics import client_server_ttft, summarize as summarize_model
from workload.bench.netprobe import host_port, tcp_connect_samples
from workload.bench.records import RequestRecord
from workload.bench.sse import SSEEvent

pytestmark = pytest.mark.unit


def summarize(*args, **kwargs) -> dict:
    """The summary as the step document stores it (``model_dump(mode="json")``)."""
    return summarize_model(*args, **kwargs).model_dump(mode="json")
approx = pytest.approx


def rec(index: int, **kw) -> RequestRecord:
    return RequestRecord(index=index, scenario="s", prompt_id=f"q{index}", prompt_chars=10, **kw)


def paired(index: int, t_sent: float, t_first: float, server_ttft, rid: str | None = None, **kw) -> RequestRecord:
    rid = rid or f"req-{index}"
    return rec(index, t_sent=t_sent, t_first_token=t_first, token_times=[t_first], t_end=t_first + 0.5,
               output_tokens=1, output_tokens_source="server_usage", request_id=rid, server_request_id=rid,
               server_timings={"ttft_ms": server_ttft} if server_ttft is not None else {}, **kw)


# --------------------------------------------------------------------------- per record


def test_client_minus_server_ttft_per_record():
    r = paired(0, t_sent=1.0, t_first=1.25, server_ttft=200.0)  # client 250 ms
    assert r.ttft_ms == 250.0
    assert r.client_minus_server_ttft_ms == approx(50.0)


def test_integer_server_ttft_is_accepted():
    assert paired(0, 1.0, 1.125, server_ttft=100).client_minus_server_ttft_ms == approx(25.0)


@pytest.mark.parametrize("server", [None, "200", True, [200.0]])
def test_unusable_server_ttft_is_no_pair(server):
    r = paired(0, 1.0, 1.25, server_ttft=None)
    if server is not None:
        r.server_timings = {"ttft_ms": server}
    assert r.client_minus_server_ttft_ms is None


@pytest.mark.parametrize(("meta_id", "done_id"), [("req-1", "req-2"), (None, "req-1"), ("req-1", None),
                                                   (None, None)])
def test_pair_needs_equal_request_ids(meta_id, done_id):
    r = paired(0, 1.0, 1.25, server_ttft=200.0)
    r.request_id, r.server_request_id = meta_id, done_id
    assert r.client_minus_server_ttft_ms is None


def test_no_pair_without_client_ttft():
    r = paired(0, 1.0, 1.25, server_ttft=200.0)
    r.t_first_token = None
    assert r.client_minus_server_ttft_ms is None


# --------------------------------------------------------------------------- distribution


def test_client_server_distribution():
    records = [
        paired(0, 0.0, 0.5, server_ttft=1.0, warmup=True),  # warm-up: excluded (diff 499)
        paired(1, 1.0, 1.125, server_ttft=100.0),  # 25
        paired(2, 2.0, 2.25, server_ttft=200.0),  # 50
        paired(3, 3.0, 3.375, server_ttft=275.0),  # 100
        paired(4, 4.0, 4.5, server_ttft=300.0),  # 200
        paired(5, 5.0, 5.25, server_ttft=None),  # ok but no server TTFT: unpaired
        paired(6, 6.0, 6.25, server_ttft=10.0, error_code="server_error", error_message="x"),  # failed: excluded
    ]
    d = client_server_ttft(records)
    # sorted [25, 50, 100, 200]; position 3q/100
    assert d["count"] == 4
    assert d["unpaired"] == 1
    assert d["mean"] == approx(93.75)
    assert (d["min"], d["max"]) == (approx(25.0), approx(200.0))
    assert d["p50"] == approx(75.0)  # 50 + (100 - 50) * 0.5
    assert d["p90"] == approx(170.0)  # position 2.7: 100 + 100 * 0.7
    assert d["p99"] == approx(197.0)  # position 2.97
    s = summarize(records, wall_time_s=8.0)
    assert s["client_minus_server_ttft_ms"] == d


def test_client_server_distribution_without_server_timings():
    d = client_server_ttft([paired(0, 0.0, 0.25, server_ttft=None)])
    assert d["count"] == 0 and d["unpaired"] == 1 and d["p50"] is None


# --------------------------------------------------------------------------- the join in the endpoint


def ev(name: str, data: dict) -> SSEEvent:
    return SSEEvent(name, json.dumps(data))


def stream(meta_id, done_id, timings=None) -> RequestRecord:
    ep, r = RagStreamEndpoint(), rec(0, t_sent=1.0)
    if meta_id is not None:
        ep.on_event(r, ev("meta", {"request_id": meta_id, "replica_id": "pod-a"}), 1.0625)
    ep.on_event(r, ev("token", {"text": "a"}), 1.25)
    done = {"timings": timings if timings is not None else {"ttft_ms": 200.0}, "token_count": 1}
    if done_id is not None:
        done["request_id"] = done_id
    assert ep.on_event(r, ev("done", done), 1.5) == FINISHED
    return r


def test_matching_ids_pair_client_and_server():
    r = stream("req-1", "req-1")
    assert r.ok and (r.request_id, r.server_request_id) == ("req-1", "req-1")
    assert r.server_timings == {"ttft_ms": 200.0}
    assert r.client_minus_server_ttft_ms == approx(50.0)  # 250 - 200


def test_done_of_another_request_fails_the_record():
    r = stream("req-1", "req-2")
    assert not r.ok
    assert r.error_code == "malformed_event"
    assert "req-2" in r.error_message and "req-1" in r.error_message
    assert r.server_timings == {}  # never paired with this request
    assert r.client_minus_server_ttft_ms is None
    assert r.t_end == 1.5


def test_done_without_request_id_keeps_no_server_timings():
    r = stream("req-1", None)
    assert r.ok  # the stream itself is fine
    assert r.server_timings == {}
    assert r.client_minus_server_ttft_ms is None


def test_done_alone_names_the_request():
    r = stream(None, "req-9")
    assert r.ok and r.request_id == "req-9"
    assert r.client_minus_server_ttft_ms == approx(50.0)


# --------------------------------------------------------------------------- network round trip


def test_summary_reports_connect_samples_and_ttft_minus_rtt():
    records = [paired(1, 1.0, 1.125, None), paired(2, 2.0, 2.25, None, connect_ms=0.5),
               paired(3, 3.0, 3.375, None)]  # TTFT 125, 250, 375 -> p50 250
    s = summarize(records, wall_time_s=4.0, connect_samples_ms=[0.25, 0.5, 0.75, 1.5], connect_errors=1)
    before = s["tcp_connect"]["before_load_ms"]
    assert before["count"] == 4
    assert before["min"] == 0.25 and before["max"] == 1.5
    assert before["p50"] == approx(0.625)  # position 1.5 between 0.5 and 0.75
    assert before["p90"] == approx(1.275)  # position 2.7: 0.75 + 0.75 * 0.7
    assert before["mean"] == approx(0.75)
    assert s["tcp_connect"]["before_load_errors"] == 1
    assert s["tcp_connect"]["before_load_samples_ms"] == [0.25, 0.5, 0.75, 1.5]
    assert s["tcp_connect"]["during_run_ms"]["count"] == 1  # only request 2 opened a connection
    assert s["ttft_p50_minus_rtt_ms"] == approx(250.0 - 0.625)
    assert json.loads(json.dumps(s)) == s


def test_no_connect_samples_no_rtt_figure():
    s = summarize([paired(1, 1.0, 1.125, None)], wall_time_s=1.0)
    assert s["tcp_connect"]["before_load_ms"]["count"] == 0
    assert s["ttft_p50_minus_rtt_ms"] is None


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:18000", ("127.0.0.1", 18000)), ("https://example.test/v1", ("example.test", 443)),
    ("http://example.test", ("example.test", 80)), ("http://[::1]:9/x", ("::1", 9)),
])
def test_host_port(url, expected):
    assert host_port(url) == expected


@pytest.mark.parametrize("url", ["ftp://h:1", "127.0.0.1:80", "http://:80"])
def test_host_port_rejects_non_http(url):
    with pytest.raises(ValueError):
        host_port(url)


def test_connect_samples_against_a_real_listener():
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = server.getsockname()[1]
    accepted = []

    def accept() -> None:
        server.settimeout(5)
        try:
            while len(accepted) < 5:
                conn, _ = server.accept()
                accepted.append(conn)
                conn.close()
        except OSError:
            pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        out = tcp_connect_samples(f"http://127.0.0.1:{port}", count=5, timeout_s=2.0)
    finally:
        thread.join(timeout=5)
        server.close()
    assert out.errors == 0 and out.first_error is None
    assert len(out.samples_ms) == 5
    assert all(0 < v < 2000 for v in out.samples_ms)
    assert len(accepted) == 5  # every sample was a real connection


def test_connect_samples_count_refused_connections():
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        out = tcp_connect_samples(f"http://127.0.0.1:{port}", count=3, timeout_s=1.0)
    assert out.samples_ms == []
    assert out.errors == 3
    assert "Connection refused" in out.first_error or "ConnectionRefused" in out.first_error


def test_connect_samples_stop_at_the_budget():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        out = tcp_connect_samples(f"http://127.0.0.1:{port}", count=1000, timeout_s=1.0, budget_s=0.05,
                                  gap_s=0.01)
    assert 1 <= out.errors < 1000  # stopped early by the budget


def test_zero_samples_probe_nothing():
    out = tcp_connect_samples("http://127.0.0.1:1", count=0)
    assert (out.samples_ms, out.errors) == ([], 0)
