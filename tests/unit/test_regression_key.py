"""What makes two runs comparable for the regression check (ragbench.regressions, no database)."""

from __future__ import annotations

from ragbench.regressions import east_west_key, north_south_key

DAG_PARAMS = {"load_mode": "concurrent", "concurrency": 4, "requests": 32, "warmup_requests": 2, "max_tokens": 64,
              "north_south_from": "orchestrator"}


def key(kind="kubernetes", params=None, strategy=None, model="m", corpus="c"):
    return north_south_key(kind, DAG_PARAMS if params is None else params, model, corpus,
                           strategy or {"type": "concurrent", "concurrency": 4})


def test_missing_params_take_the_load_generators_defaults():
    # params without max_tokens ran with the load generator's default of 64; `k` is no DAG param,
    # so DAG runs use the default k = 4, and a run that set another k is not comparable
    assert key(params={k: v for k, v in DAG_PARAMS.items() if k != "max_tokens"}) == key()
    assert key()["k"] == 4 and key(params={**DAG_PARAMS, "k": 8}) != key()


def test_the_vantage_point_is_part_of_the_key():
    assert key()["vantage"] == "orchestrator"
    assert key(params={**DAG_PARAMS, "north_south_from": "cluster"})["vantage"] == "cluster"
    # the local target's load always comes from the same machine, whatever the param says
    assert key(kind="local")["vantage"] == key(kind="local", params={**DAG_PARAMS, "north_south_from": "cluster"})[
        "vantage"] == "local"


def test_an_arrival_seed_is_another_sample_of_the_same_load():
    poisson = {**DAG_PARAMS, "load_mode": "poisson", "rate_rps": 2.0}
    a = key(params=poisson, strategy={"type": "poisson", "rate_rps": 2.0, "burstiness": 1.0, "seed": 1})
    b = key(params=poisson, strategy={"type": "poisson", "rate_rps": 2.0, "burstiness": 1.0, "seed": 2})
    c = key(params=poisson, strategy={"type": "poisson", "rate_rps": 4.0, "burstiness": 1.0, "seed": 1})
    assert a == b and a != c


def test_every_dimension_of_the_key_separates_runs():
    base = key()
    for other in (key(params={**DAG_PARAMS, "requests": 64}), key(params={**DAG_PARAMS, "warmup_requests": 0}),
                  key(params={**DAG_PARAMS, "max_tokens": 128}), key(params={**DAG_PARAMS, "load_mode": "sweep"}),
                  key(strategy={"type": "concurrent", "concurrency": 8}), key(model="other"), key(corpus="other")):
        assert other != base


def test_east_west_depends_on_the_path_and_iperf3_settings_only():
    assert east_west_key(DAG_PARAMS, "pod-network", True) == east_west_key({**DAG_PARAMS, "requests": 999},
                                                                            "pod-network", True)
    assert east_west_key(DAG_PARAMS, "pod-network", True) != east_west_key(DAG_PARAMS, "loopback", False)
    assert east_west_key(DAG_PARAMS, "pod-network", True) != east_west_key({**DAG_PARAMS, "ew_streams": 4},
                                                                            "pod-network", True)
