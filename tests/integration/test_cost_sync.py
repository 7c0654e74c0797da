"""The cost_inputs maintenance DAG's work against a real PostgreSQL: a changed cost file is loaded,
an unchanged one is not, a broken one loads nothing and is tried again. The file is a copy of the
shipped config/costs.yaml, checked against the shipped targets."""

from __future__ import annotations

import shutil

import pytest
import sqlalchemy as sa
import yaml

from ragbench import cost_sync, costs, db
from ragbench.errors import RagbenchError

pytestmark = pytest.mark.integration


@pytest.fixture
def migrated(engine):
    db.migrate(engine)
    return engine


@pytest.fixture
def cost_file(tmp_path):
    path = tmp_path / "costs.yaml"
    shutil.copy(costs.default_path(), path)
    return path


def local_price(engine) -> float:
    with engine.connect() as conn:
        return float(conn.execute(sa.text(
            "SELECT price_usd FROM cost_inputs WHERE provider = 'local' AND component = 'machine'")).scalar())


def set_local_price(path, usd_per_hour: float) -> None:
    data = yaml.safe_load(path.read_text())
    (pool,) = data["local"][-1]["node_pools"]
    pool["usd_per_hour"] = usd_per_hour
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def loads(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(
            "SELECT sha256, inserted, updated, deleted FROM cost_file_loads ORDER BY load_id"))]


def test_changed_loads_unchanged_does_not(migrated, cost_file):
    first = cost_sync.sync(migrated, cost_file)
    assert first.changed and first.previous_sha256 is None
    assert first.loaded.inserted == first.loaded.rows > 0
    assert first.sha256 == cost_sync.file_sha256(cost_file)
    assert loads(migrated) == [(first.sha256, first.loaded.rows, 0, 0)]

    second = cost_sync.sync(migrated, cost_file)  # the same bytes: nothing loaded, nothing recorded
    assert not second.changed and second.loaded is None
    assert "unchanged" in second.describe()
    assert len(loads(migrated)) == 1

    # the local machine gets a price: a changed file, loaded
    set_local_price(cost_file, 0.25)
    third = cost_sync.sync(migrated, cost_file)
    assert third.changed and third.previous_sha256 == first.sha256
    assert (third.loaded.inserted, third.loaded.updated, third.loaded.deleted) == (0, 1, 0)
    assert local_price(migrated) == 0.25
    assert [row[0] for row in loads(migrated)] == [first.sha256, third.sha256]


def test_a_change_that_prices_nothing_new_is_recorded_but_writes_no_price(migrated, cost_file):
    first = cost_sync.sync(migrated, cost_file)
    cost_file.write_text(cost_file.read_text() + "\n# a comment changes the bytes, not the prices\n")
    second = cost_sync.sync(migrated, cost_file)
    assert second.changed and second.sha256 != first.sha256
    assert (second.loaded.inserted, second.loaded.updated, second.loaded.deleted) == (0, 0, 0)
    assert not cost_sync.sync(migrated, cost_file).changed


def test_a_broken_file_loads_nothing_and_is_tried_again(migrated, cost_file):
    good = cost_sync.sync(migrated, cost_file)
    text = cost_file.read_text()
    data = yaml.safe_load(text)
    data["local"][-1]["as_of"] = "2026-01-32"
    cost_file.write_text(yaml.safe_dump(data, sort_keys=False))
    for _ in range(2):  # every check fails the same way until the file is fixed
        with pytest.raises(RagbenchError, match=r"local\[2026-01-32\]\.as_of: '2026-01-32' is not a date"):
            cost_sync.sync(migrated, cost_file)
    assert [row[0] for row in loads(migrated)] == [good.sha256]
    cost_file.write_text(text)  # fixed: back to the loaded bytes, nothing to do
    assert not cost_sync.sync(migrated, cost_file).changed
