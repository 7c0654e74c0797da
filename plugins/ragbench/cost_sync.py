"""Load config/costs.yaml into the results database when the file has changed.

The cost_inputs maintenance DAG (dags/cost_inputs.py) calls :func:`sync` every few minutes. The
file's SHA-256 is compared with the newest row of ``cost_file_loads`` for that path; only a new
hash is validated and loaded (ragbench.costs.load_costs and store, idempotent), then recorded. A
file that does not validate is never recorded, so the next check tries again and fails again until
it is fixed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ragbench import costs
from ragbench.targets import TargetsConfig


@dataclass(frozen=True)
class SyncResult:
    path: str  # as recorded: relative to the project when inside it
    sha256: str
    previous_sha256: str | None
    loaded: costs.LoadResult | None  # None: unchanged, nothing loaded

    @property
    def changed(self) -> bool:
        return self.loaded is not None

    def describe(self) -> str:
        if self.loaded is None:
            return f"{self.path} unchanged (sha256 {self.sha256[:12]}): nothing to load"
        was = f"was {self.previous_sha256[:12]}" if self.previous_sha256 else "first load"
        return f"{self.path} changed (sha256 {self.sha256[:12]}, {was}): {self.loaded.describe(Path(self.path))}"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def last_loaded_sha256(engine: Engine, path: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT sha256 FROM cost_file_loads WHERE path = :p ORDER BY loaded_at DESC, load_id DESC LIMIT 1"),
            {"p": path}).scalar()


def sync(engine: Engine, path: Path | None = None, targets: TargetsConfig | None = None) -> SyncResult:
    """Load the cost file if its content differs from the last load of that path (the tables must
    exist: run db.migrate first)."""
    path = path or costs.default_path()
    key = costs.display_path(path)
    digest = file_sha256(path)
    previous = last_loaded_sha256(engine, key)
    if digest == previous:
        return SyncResult(key, digest, previous, None)
    inputs = costs.load_costs(path, targets)  # validated before anything is written
    result = costs.store(engine, inputs)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO cost_file_loads (path, sha256, price_sets, rows, inserted, updated, deleted) "
            "VALUES (:p, :h, :s, :r, :i, :u, :d)"),
            {"p": key, "h": digest, "s": result.price_sets, "r": result.rows, "i": result.inserted,
             "u": result.updated, "d": result.deleted})
    return SyncResult(key, digest, previous, result)
