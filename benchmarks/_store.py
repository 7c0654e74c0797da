"""Shared set-up of the results-store benchmarks: a throw-away PostgreSQL with the project's schema."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.engine import Engine

from ragbench import db
from ragbench.pgserver import EmbeddedPostgres, free_port


@contextlib.contextmanager
def scratch_database() -> Iterator[Engine]:
    """RAGBENCH_BENCH_DATABASE_URL (an empty database you own), or an embedded server in a temp folder
    that is removed afterwards. The schema is migrated either way."""
    url = os.environ.get("RAGBENCH_BENCH_DATABASE_URL")
    server = None
    data_dir = Path(tempfile.mkdtemp(prefix="ragbench-bench-pg-"))
    try:
        if not url:
            server = EmbeddedPostgres(data_dir=data_dir, port=free_port())
            url = server.start()
        engine = db.connect(url)
        db.migrate(engine)
        try:
            yield engine
        finally:
            engine.dispose()
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
