"""API hardening against the live service (vLLM, Ray Serve, embedded Qdrant): the bearer token,
request limits (each refused with a clear 4xx before any work), server-side ids, CORS closed."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from live_service import API_TOKEN

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
QUERY = {"query": "Which taint do GPU nodes carry?", "max_tokens": 2, "ignore_eos": True}
ONE_DOC = {"documents": [{"name": "a.txt", "content": "GPU nodes carry a taint."}]}


def post(client: httpx.Client, path: str, body) -> httpx.Response:
    """POST ``body`` as JSON with ASCII escapes (so lone surrogates travel as they would from any client)."""
    return client.post(path, content=json.dumps(body).encode(), headers={**AUTH, "content-type": "application/json"})


@pytest.fixture(scope="module")
def client(guarded_service):
    with httpx.Client(base_url=guarded_service.service_url, timeout=60) as c:
        yield c


@pytest.mark.parametrize("path,body", [("/query", QUERY), ("/query/stream", QUERY), ("/ingest", ONE_DOC)])
def test_bearer_token(client, path, body):
    missing = client.post(path, json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["detail"]["code"] == "unauthorized"
    for wrong in ("Bearer nope", f"Bearer {API_TOKEN}x", API_TOKEN, f"bearer {API_TOKEN}"):
        assert client.post(path, json=body, headers={"Authorization": wrong}).status_code == 401, wrong
    assert client.post(path, json=body, headers=AUTH).status_code == 200
    # An unauthenticated body is never parsed: junk gets 401, not 422.
    assert client.post(path, content=b"{not json", headers={"content-type": "application/json"}).status_code == 401


def test_open_endpoints_need_no_token(client):
    for path in ("/healthz", "/readyz", "/metrics", "/documents"):
        assert client.get(path).status_code == 200, path


@pytest.mark.parametrize("body,status", [
    ({**QUERY, "query": "x" * 4001}, 400),  # max_query_chars
    ({**QUERY, "query": "   "}, 400),
    ({**QUERY, "query": "\ud800 lone surrogate"}, 400),
    ({**QUERY, "k": 0}, 400),
    ({**QUERY, "k": 21}, 400),  # max_k
    ({**QUERY, "k": 10**30}, 400),
    ({**QUERY, "max_tokens": 513}, 400),  # max_tokens_limit
    ({**QUERY, "max_tokens": 0}, 422),
    ({**QUERY, "max_tokens": "many"}, 422),
    ({**QUERY, "session_id": "bad id with spaces"}, 422),
    ({**QUERY, "session_id": "s" * 65}, 422),
    ({"k": 2}, 422),
])
def test_query_limits(client, body, status):
    for path in ("/query", "/query/stream"):
        r = post(client, path, body)
        assert r.status_code == status, (path, r.text[:300])
        assert r.json()["detail"]["code"] == ("bad_request" if status == 400 else "invalid_request")


def test_request_body_size_limits(client):
    big = b'{"query": "' + b"x" * 70_000 + b'"}'  # max_request_bytes 64,000
    r = client.post("/query/stream", content=big, headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["detail"]["code"] == "too_large"

    def chunked():  # no Content-Length: counted as it arrives
        for _ in range(10):
            yield b"x" * 10_000

    r = client.post("/query", content=chunked(), headers={**AUTH, "content-type": "application/json"})
    assert r.status_code == 413, r.text


@pytest.mark.parametrize("documents,status,code", [
    ([{"name": "big.txt", "content": "x" * 5_000_001}], 413, "too_large"),  # max_upload_bytes
    ([{"name": f"d{i}.txt", "content": "x"} for i in range(501)], 413, "too_many_documents"),
    ([{"name": "a.exe", "content": "x"}], 415, "unsupported_type"),
    ([{"name": "a.txt", "content_base64": "not base64!"}], 400, "bad_document"),
    ([{"name": "a.txt", "content": "\udcff"}], 400, "bad_document"),
    ([], 400, "empty_corpus"),
])
def test_upload_limits(client, documents, status, code):
    r = post(client, "/ingest", {"documents": documents})
    assert r.status_code == status, r.text[:300]
    assert r.json()["detail"]["code"] == code


def test_upload_within_limits_is_accepted(client):
    pdfless = {"name": "b.md", "content_base64": base64.b64encode(b"# Title\n\nQdrant stores vectors.").decode()}
    r = client.post("/ingest", json={"documents": [pdfless]}, headers=AUTH)
    assert r.status_code == 200 and r.json()["chunks"] == 1


def test_ids_are_generated_server_side(client):
    answers = [client.post("/query", json=QUERY, headers=AUTH).json() for _ in range(2)]
    ids = [a["request_id"] for a in answers]
    assert len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    assert answers[0]["session_id"] != answers[1]["session_id"]
    given = client.post("/query", json={**QUERY, "session_id": "chat-42"}, headers=AUTH).json()
    assert given["session_id"] == "chat-42"
    # A client cannot choose the request_id.
    forced = client.post("/query", json={**QUERY, "request_id": "mine"}, headers=AUTH).json()
    assert forced["request_id"] != "mine"


def test_cors_is_closed(client):
    origin = {"Origin": "https://elsewhere.example"}
    pre = client.options("/query", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert pre.status_code in (401, 404, 405) and "access-control-allow-origin" not in pre.headers
    r = client.get("/healthz", headers=origin)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
