"""DAG params -> the load generator's config, and the workload CLI arguments of each local step."""

from __future__ import annotations

import json

import pytest

from ragbench.errors import RagbenchError
from ragbench.local_exec import step_argv
from ragbench.steps import MEASURING_STEPS, STEP_BY_NAME, STEPS, north_south_config
from workload.bench.northsouth import NorthSouthConfig

pytestmark = pytest.mark.unit


def test_default_config_is_concurrent():
    assert north_south_config({}) == {
        "endpoint_kind": "rag",
        "strategy": {"type": "concurrent", "concurrency": 4},
        "stop": {"max_requests": 256, "max_duration_s": 600},
        "warmup_requests": 2,
        "max_tokens": 64,
        "k": 4,
        "cache": "cold",
        "slo": {"ttft_ms": 2000, "tpot_ms": 200, "e2e_ms": None},
        "seed": 0,
        "workers": 0,
    }


def test_defaults_come_from_the_run_params():
    from ragbench.run_params import default

    config = north_south_config({})
    assert config["strategy"]["concurrency"] == default("concurrency")
    assert config["stop"]["max_requests"] == default("requests")
    assert (config["warmup_requests"], config["max_tokens"], config["cache"]) == \
        (default("warmup_requests"), default("max_tokens"), default("cache"))
    sweep = north_south_config({"load_mode": "sweep"})["strategy"]
    assert sweep["levels"] == default("sweep_levels")
    assert sweep["slo_attainment_target"] == default("slo_attainment_target")


@pytest.mark.parametrize("cache", ["cold", "warm"])
def test_cache_is_passed_to_the_load_generator(cache):
    config = north_south_config({"cache": cache})
    assert config["cache"] == cache
    assert "unique_prompts" not in config


def test_concurrent_params():
    config = north_south_config({"load_mode": "concurrent", "concurrency": 8, "requests": 100,
                                 "max_duration_s": 60, "warmup_requests": 0, "max_tokens": 32, "k": 2,
                                 "slo_ttft_ms": 500, "slo_tpot_ms": 50, "slo_e2e_ms": 3000, "seed": 7,
                                 "rate_rps": 9.0})
    assert config["strategy"] == {"type": "concurrent", "concurrency": 8}  # rate_rps ignored
    assert config["stop"] == {"max_requests": 100, "max_duration_s": 60}
    assert (config["warmup_requests"], config["max_tokens"], config["k"], config["seed"]) == (0, 32, 2, 7)
    assert config["slo"] == {"ttft_ms": 500, "tpot_ms": 50, "e2e_ms": 3000}


@pytest.mark.parametrize("workers", [0, 1, 4, 64])
def test_workers_reach_the_load_generator(workers):
    """The run's workers param (0 = auto) is the load generator's config, for the local step and
    the orchestrator vantage alike (both build NorthSouthConfig from north_south_config)."""
    config = north_south_config({"workers": workers})
    assert config["workers"] == workers
    assert NorthSouthConfig.model_validate(json.loads(json.dumps(config))).workers == workers
    argv = step_argv("north_south", {"workers": workers}, "http://127.0.0.1:18000")
    assert json.loads(argv[3])["workers"] == workers


def test_client_pods_are_not_the_load_generators_business():
    assert "client_pods" not in json.dumps(north_south_config({"client_pods": 4}))


def test_poisson_params():
    config = north_south_config({"load_mode": "poisson", "rate_rps": 1.5, "seed": 3, "concurrency": 16})
    assert config["strategy"] == {"type": "poisson", "rate_rps": 1.5, "seed": 3}  # concurrency ignored
    assert config["seed"] == 3
    assert north_south_config({"load_mode": "poisson"})["strategy"] == {"type": "poisson", "rate_rps": 2.0, "seed": 0}


@pytest.mark.parametrize("params", [{}, {"load_mode": "poisson", "rate_rps": 0.5, "seed": 1},
                                    {"concurrency": 2, "slo_e2e_ms": 10000}])
def test_config_is_accepted_by_the_workload(params):
    """What the orchestrator sends must validate as the workload's NorthSouthConfig."""
    config = NorthSouthConfig.model_validate(json.loads(json.dumps(north_south_config(params))))
    expected = north_south_config(params)
    assert config.strategy.type == expected["strategy"]["type"]
    assert config.stop.max_requests == expected["stop"]["max_requests"]
    assert config.slo == expected["slo"]
    if expected["strategy"]["type"] == "poisson":
        assert config.strategy.rate_rps == expected["strategy"]["rate_rps"]
    else:
        assert config.strategy.concurrency == expected["strategy"]["concurrency"]


def test_steps_table():
    assert [s.name for s in STEPS] == ["deploy", "ingest", "north_south", "east_west", "browser_north_south",
                                       "teardown"]
    assert [s.name for s in STEPS if s.is_teardown] == ["teardown"]
    assert STEP_BY_NAME["north_south"].local_command == "north-south"
    assert set(MEASURING_STEPS) <= set(STEP_BY_NAME)


@pytest.mark.parametrize("step", ["deploy", "teardown"])
def test_argv_deploy_and_teardown_use_the_state_dir(step, tmp_path, monkeypatch):
    monkeypatch.setenv("RAGBENCH_STATE_DIR", str(tmp_path))
    assert step_argv(step, {}, None) == ["--state-dir", str(tmp_path.resolve())]


def test_argv_ingest():
    assert step_argv("ingest", {}, "http://127.0.0.1:18000") == ["--endpoint", "http://127.0.0.1:18000"]


def test_argv_north_south_carries_the_config_as_json():
    params = {"load_mode": "poisson", "rate_rps": 3.0, "requests": 10}
    argv = step_argv("north_south", params, "http://127.0.0.1:18000")
    assert argv[:3] == ["--endpoint", "http://127.0.0.1:18000", "--config"]
    assert len(argv) == 4
    assert json.loads(argv[3]) == north_south_config(params)


def test_argv_browser_north_south_asks_the_requested_number_with_the_runs_config():
    params = {"browser_requests": 5, "max_tokens": 32, "k": 2, "slo_ttft_ms": 900}
    argv = step_argv("browser_north_south", params, "http://127.0.0.1:18000")
    assert argv[:4] == ["--endpoint", "http://127.0.0.1:18000", "--requests", "5"]
    assert argv[4] == "--config" and json.loads(argv[5]) == north_south_config(params)
    browser = STEP_BY_NAME["browser_north_south"]
    assert browser.local_only and browser.enabled_by == "browser_requests"
    assert browser.local_command == "browser-north-south" and "browser_north_south" not in MEASURING_STEPS


def test_argv_east_west():
    assert step_argv("east_west", {}, "http://x") == ["--duration", "3", "--streams", "1", "--samples", "3"]
    assert step_argv("east_west", {}, None) == step_argv("east_west", {}, "http://x")  # no endpoint needed
    assert step_argv("east_west", {"ew_duration_s": 5, "ew_streams": 2, "ew_samples": 4}, "http://x") == \
        ["--duration", "5", "--streams", "2", "--samples", "4"]


@pytest.mark.parametrize("step", ["ingest", "north_south", "browser_north_south"])
def test_steps_after_deploy_need_the_endpoint(step):
    with pytest.raises(RagbenchError, match=f"^step {step} needs the endpoint from the deploy step$"):
        step_argv(step, {}, None)


def test_unknown_step():
    with pytest.raises(RagbenchError, match="unknown step 'telemetry'"):
        step_argv("telemetry", {}, "http://x")


def test_sweep_params_become_a_sweep_strategy_the_client_accepts():
    from workload.bench.northsouth import NorthSouthConfig, SweepStrategy

    config = north_south_config({"load_mode": "sweep", "sweep_levels": [8, 1, 4, 4], "slo_attainment_target": 0.9})
    assert config["strategy"] == {"type": "sweep", "levels": [1, 4, 8], "slo_attainment_target": 0.9}
    parsed = NorthSouthConfig.model_validate(config)
    assert isinstance(parsed.strategy, SweepStrategy) and parsed.strategy.levels == [1, 4, 8]
