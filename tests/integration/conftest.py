"""A fresh database for every results-store test (on the session's server, see tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def database_url(pg_url_factory):
    return pg_url_factory()


@pytest.fixture
def engine(database_url):
    from ragbench import db

    eng = db.connect(database_url)
    yield eng
    eng.dispose()
