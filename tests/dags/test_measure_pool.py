"""Measuring steps of different targets never overlap: every measuring task of every target group
(local and cluster) is in the one-slot pool, and nothing else is (a task that holds the slot
without measuring would only delay the others)."""

from __future__ import annotations

import pytest

from ragbench.steps import MEASURE_POOL, MEASURE_POOL_SLOTS, measure_pool
from ragbench.targets import load_targets

pytestmark = pytest.mark.unit

MEASURING_TASKS = {"ingest_corpus", "run_north_south", "run_north_south_in_cluster", "run_east_west",
                   "run_browser_north_south"}


def test_the_pool_is_one_slot_and_named_once():
    assert (MEASURE_POOL, MEASURE_POOL_SLOTS) == ("ragbench_measure", 1)
    assert measure_pool("north_south", "kubernetes") == measure_pool("ingest", "local") == MEASURE_POOL
    assert measure_pool("deploy", "local") == MEASURE_POOL  # starts vLLM and Ray on this machine
    assert measure_pool("deploy", "kubernetes") is None  # waits on the cluster, using no local CPU
    assert measure_pool("browser_north_south", "local") == MEASURE_POOL  # drives Chromium on this machine
    assert measure_pool("teardown", "local") is None


def test_every_measuring_task_of_every_target_is_in_the_pool(checked_in_dag):
    targets = load_targets().targets
    assert {t.kind for t in targets} == {"local", "kubernetes"}  # both renderers are covered
    pooled_by_target = {}
    for target in targets:
        group = target.name.replace("-", "_")
        tasks = {t.task_id.split(".", 1)[1]: t for t in checked_in_dag.tasks if t.task_id.startswith(f"{group}.")}
        pooled = {name for name, t in tasks.items() if t.pool == MEASURE_POOL}
        expected = MEASURING_TASKS & set(tasks)
        if target.kind == "local":
            expected |= {"deploy_workload"}
        assert pooled == expected, target.name
        assert all(tasks[name].pool_slots == 1 for name in pooled)
        assert {t.pool for name, t in tasks.items() if name not in pooled} == {"default_pool"}, target.name
        pooled_by_target[target.name] = pooled
    assert {"run_north_south", "run_north_south_in_cluster", "run_east_west", "ingest_corpus"} <= \
        pooled_by_target["aws-eks"]
    assert pooled_by_target["local"] == {"deploy_workload", "ingest_corpus", "run_north_south", "run_east_west",
                                         "run_browser_north_south"}
    run_level = [t for t in checked_in_dag.tasks if "." not in t.task_id]
    assert run_level and all(t.pool == "default_pool" for t in run_level)
