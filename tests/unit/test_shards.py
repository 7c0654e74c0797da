"""The shard plan: one scenario's schedule split so that shards computed independently (processes,
pods) send exactly the requests one process would, with the same due times."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workload.bench.shards import (
    CAPACITY_EVENTS_PER_S,
    STREAM_EVENTS_PER_S,
    arrival_schedule,
    auto_workers,
    plan_shard,
)
from workload.bench.strategies import ConcurrentStrategy, PoissonStrategy, StopConditions

pytestmark = pytest.mark.unit

poisson = st.builds(PoissonStrategy, rate_rps=st.floats(0.5, 500), burstiness=st.floats(0.2, 3),
                    seed=st.integers(0, 10**6))
stops = st.builds(StopConditions, max_requests=st.integers(1, 400), max_duration_s=st.floats(0.5, 60))


@settings(max_examples=200, deadline=None)
@given(strategy=poisson, stop=stops, warmup=st.integers(0, 12), count=st.integers(1, 16))
def test_open_loop_shards_deal_out_the_whole_schedule_once(strategy, stop, warmup, count):
    whole = plan_shard(strategy, stop, warmup)
    shards = [plan_shard(strategy, stop, warmup, i, count) for i in range(count)]
    due = {g: t for p in shards for g, t in zip(p.measured_indices, p.due_s)}
    assert sum(len(p.measured_indices) for p in shards) == len(due)  # no index twice
    assert due == dict(zip(whole.measured_indices, whole.due_s))  # same requests, same due times
    assert sorted(g for p in shards for g in p.warmup_indices) == list(range(warmup))
    for p in shards:
        assert list(p.due_s) == sorted(p.due_s)  # each shard sends in schedule order
        assert p.concurrency is None and p.schedule_stopped_by == whole.schedule_stopped_by


@settings(max_examples=200, deadline=None)
@given(concurrency=st.integers(1, 64), requests=st.integers(1, 500), warmup=st.integers(0, 12), data=st.data())
def test_closed_loop_shards_split_the_slots_and_the_requests(concurrency, requests, warmup, data):
    count = data.draw(st.integers(1, concurrency))
    strategy, stop = ConcurrentStrategy(concurrency=concurrency), StopConditions(max_requests=requests)
    shards = [plan_shard(strategy, stop, warmup, i, count) for i in range(count)]
    assert sum(p.concurrency for p in shards) == concurrency
    assert {p.concurrency for p in shards} <= {concurrency // count, concurrency // count + 1}
    indices = sorted(g for p in shards for g in p.measured_indices)
    assert indices == list(range(warmup, warmup + requests))  # every global index exactly once
    for p in shards:
        # requests in proportion to the slots (one round of the slots at most apart)
        assert abs(len(p.measured_indices) - requests * p.concurrency / concurrency) <= p.concurrency
        assert p.due_s is None and list(p.measured_indices) == sorted(p.measured_indices)


@settings(max_examples=100, deadline=None)
@given(concurrency=st.integers(1, 48), requests=st.integers(1, 300), data=st.data())
def test_workers_inside_a_shard_are_shards_of_the_whole(concurrency, requests, data):
    """A pod's own processes, each choosing its number of workers, still partition the whole."""
    count = data.draw(st.integers(1, concurrency))
    strategy, stop = ConcurrentStrategy(concurrency=concurrency), StopConditions(max_requests=requests)
    sent, slots = [], 0
    for i in range(count):
        own = plan_shard(strategy, stop, 2, i, count).concurrency
        workers = data.draw(st.integers(1, own))
        parts = [plan_shard(strategy, stop, 2, i, count, w, workers) for w in range(workers)]
        assert sorted(g for p in parts for g in p.measured_indices) == \
            sorted(plan_shard(strategy, stop, 2, i, count).measured_indices)
        sent += [g for p in parts for g in p.measured_indices]
        slots += sum(p.concurrency for p in parts)
    assert sorted(sent) == list(range(2, 2 + requests)) and slots == concurrency


def test_one_shard_is_the_whole_scenario():
    strategy, stop = PoissonStrategy(rate_rps=50, seed=3), StopConditions(max_requests=40)
    plan = plan_shard(strategy, stop, 3)
    due, _ = arrival_schedule(strategy, stop)
    assert plan.warmup_indices == (0, 1, 2) and plan.measured_indices == tuple(range(3, 43))
    assert list(plan.due_s) == due and len(due) == 40 and due[0] > 0


def test_the_schedule_is_cut_by_the_duration():
    due, stopped_by = arrival_schedule(PoissonStrategy(rate_rps=10), StopConditions(max_requests=1000,
                                                                                    max_duration_s=2))
    assert stopped_by == "max_duration" and 5 < len(due) < 40 and due[-1] < 2
    assert arrival_schedule(PoissonStrategy(rate_rps=10), StopConditions(max_requests=5))[1] == "max_requests"


def test_more_shards_or_workers_than_requests_in_flight_is_refused():
    stop = StopConditions(max_requests=10)
    with pytest.raises(ValueError, match="3 shards for concurrency 2"):
        plan_shard(ConcurrentStrategy(concurrency=2), stop, 0, 0, 3)
    with pytest.raises(ValueError, match=r"3 workers for 2 requests in flight \(concurrency 5, shard 1/2\)"):
        plan_shard(ConcurrentStrategy(concurrency=5), stop, 0, 1, 2, 0, 3)
    with pytest.raises(ValueError, match="shard 4/4"):
        plan_shard(PoissonStrategy(), stop, 0, 4, 4)


def test_auto_workers_follow_the_offered_load_up_to_the_cores_and_the_slots():
    events = 2.5 * CAPACITY_EVENTS_PER_S  # needs 3 processes
    assert auto_workers(PoissonStrategy(rate_rps=events / 50), 50, cores=8) == 3
    assert auto_workers(PoissonStrategy(rate_rps=events / 50), 50, cores=2) == 2
    assert auto_workers(PoissonStrategy(rate_rps=1), 64, cores=8) == 1
    assert auto_workers(PoissonStrategy(rate_rps=events / 50), 50, shard_index=0, shard_count=3, cores=8) == 1
    conc = int(2.5 * CAPACITY_EVENTS_PER_S / STREAM_EVENTS_PER_S)
    assert auto_workers(ConcurrentStrategy(concurrency=conc), 64, cores=8) == 3
    assert auto_workers(ConcurrentStrategy(concurrency=4), 64, cores=8) == 1
    assert auto_workers(ConcurrentStrategy(concurrency=2), 64, shard_index=1, shard_count=2, cores=8) == 1


def test_a_containers_cpu_quota_caps_the_cores(tmp_path, monkeypatch):
    from workload.bench import shards

    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000\n")  # a pod limited to 1 CPU
    assert shards.cgroup_cpu_limit(str(cpu_max)) == 1.0
    monkeypatch.setattr(shards, "CGROUP_CPU_MAX", str(cpu_max))
    monkeypatch.setattr(shards.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert shards.available_cores() == 1
    cpu_max.write_text("250000 100000\n")  # 2.5 CPUs: two whole cores for workers
    assert shards.available_cores() == 2
    cpu_max.write_text("max 100000\n")  # no limit: the affinity decides
    assert shards.cgroup_cpu_limit(str(cpu_max)) is None and shards.available_cores() == 8
    assert shards.cgroup_cpu_limit(str(tmp_path / "missing")) is None
