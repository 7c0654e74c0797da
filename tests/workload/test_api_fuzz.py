"""Property-based fuzzing of the live service's HTTP API (hypothesis): whatever a client sends to
/query/stream, /query, /ingest and /readyz, the service answers within a timeout, never with a 5xx,
and a 200 stream keeps the SSE contract (meta, token..., then exactly one done or error, last).

Bounded: a fixed number of examples per endpoint, small outputs, per-request timeouts."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from live_service import API_TOKEN

from workload.bench.sse import SSEParser

pytestmark = pytest.mark.integration

TIMEOUT = httpx.Timeout(30.0, connect=5.0)
FUZZ = settings(max_examples=40, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Text with anything JSON can carry: control characters, astral planes, lone surrogates.
any_text = st.one_of(st.text(max_size=40), st.text(st.characters(codec=None, min_codepoint=0), max_size=40),
                     st.just("\ud800"), st.just("x" * 4001), st.sampled_from(["", " ", "\x00", "ok"]))
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), any_text)
junk = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)

query_body = st.fixed_dictionaries({}, optional={
    "query": st.one_of(any_text, junk),
    "k": st.one_of(st.integers(-3, 25), st.integers(), junk),
    "max_tokens": st.one_of(st.integers(-2, 6), st.sampled_from([512, 513, 10**9]), junk),
    "ignore_eos": st.one_of(st.booleans(), junk),
    "session_id": st.one_of(st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True), any_text),
    "cache_salt": st.one_of(st.from_regex(r"[A-Za-z0-9_.-]{1,128}", fullmatch=True), any_text, junk),
    "extra": junk,
})
auth_header = st.sampled_from([{"Authorization": f"Bearer {API_TOKEN}"}] * 4 + [{}, {"Authorization": "Bearer x"}])
body = st.one_of(query_body.map(lambda b: ("json", b)), junk.map(lambda b: ("json", b)),
                 st.binary(max_size=64).map(lambda b: ("raw", b)))


def _send(client: httpx.Client, method: str, path: str, kind: str, payload, headers: dict):
    if kind == "raw":
        return client.request(method, path, content=payload, headers={**headers, "content-type": "application/json"})
    return client.request(method, path, content=json.dumps(payload).encode(),
                          headers={**headers, "content-type": "application/json"})


@pytest.fixture(scope="module")
def client(guarded_service):
    with httpx.Client(base_url=guarded_service.service_url, timeout=TIMEOUT) as c:
        yield c


@FUZZ
@given(sent=body, headers=auth_header)
def test_query_stream(client, sent, headers):
    kind, payload = sent
    with client.stream("POST", "/query/stream", content=(payload if kind == "raw" else json.dumps(payload).encode()),
                       headers={**headers, "content-type": "application/json"}) as r:
        assert r.status_code < 500, r.read()[:300]
        if r.status_code != 200:
            return
        parser, names, last = SSEParser(), [], None
        for chunk in r.iter_raw():
            for event in parser.feed(chunk):
                names.append(event.event)
                last = event.json()
    assert names and names[-1] in ("done", "error"), names
    assert names.count("done") + names.count("error") == 1
    assert names[0] in ("meta", "error") and set(names[1:-1]) <= {"token"}
    if names[-1] == "error":
        assert last["code"] != "internal", last


@FUZZ
@given(sent=body, headers=auth_header)
def test_query(client, sent, headers):
    r = _send(client, "POST", "/query", *sent, headers)
    assert r.status_code < 500, r.text[:300]


documents = st.lists(st.fixed_dictionaries({"name": st.one_of(st.sampled_from(["a.txt", "b.md", "c.html", "d.pdf",
                                                                                "e.exe", ""]), any_text)},
                                           optional={"content": st.one_of(any_text, junk),
                                                     "content_base64": st.one_of(
                                                         st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode()),
                                                         any_text),
                                                     "mime_type": st.one_of(st.sampled_from(
                                                         ["text/plain", "application/pdf", "text/html", "image/png"]),
                                                         any_text)}),
                     max_size=4)
ingest_body = st.one_of(documents.map(lambda d: ("json", {"documents": d})), junk.map(lambda b: ("json", b)),
                        st.binary(max_size=64).map(lambda b: ("raw", b)))


@FUZZ
@given(sent=ingest_body, headers=auth_header)
def test_ingest(client, sent, headers):
    r = _send(client, "POST", "/ingest", *sent, headers)
    assert r.status_code < 500, r.text[:300]


@settings(max_examples=10, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
def test_readyz(client, query):
    r = client.get("/readyz", params=query)
    assert r.status_code == 200 and r.json()["ready"] is True
