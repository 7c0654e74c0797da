"""Fixtures of the workload tests. ``guarded_service``: one live service for the session, with a
bearer token, a small corpus and the default limits, shared by the limits and fuzz tests."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from live_service import API_TOKEN, DOCS, live_service, wait_until

from workload.local.processes import http_ok
from workload.local.stack import LocalStack


@pytest.fixture(scope="session")
def guarded_service(tmp_path_factory) -> Iterator[LocalStack]:
    """A ready service with a bearer token and a small corpus ingested."""
    with live_service(tmp_path_factory.mktemp("guarded"), api_token=API_TOKEN) as stack:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        assert wait_until(lambda: http_ok(f"{stack.service_url}/readyz"), 120), "service not ready"
        r = httpx.post(f"{stack.service_url}/ingest", json={"documents": DOCS}, headers=headers, timeout=120)
        assert r.status_code == 200, r.text
        yield stack
