"""rag_benchmark's trigger params: each is JSON schema with a type, bounds and a description, and a
bad value of every kind is refused before a run starts."""

from __future__ import annotations

import copy

import pytest

from ragbench.targets import load_targets

pytestmark = pytest.mark.unit

# One or more bad values per param; every param of the DAG must be listed here.
BAD_VALUES = {
    "targets": [["mars"], [], ["local", "local"], "local", [1]],
    "load_mode": ["random", 1, None],
    "sweep_levels": [[], [0], [1, 2, 2], [2000], ["8"], 4],
    "slo_attainment_target": [0, 1.5, -0.1, "high"],
    "concurrency": [0, 1025, 2.5, "4"],
    "rate_rps": [0, -1.0, 10001, "fast"],
    "requests": [0, -1, 100001, 3.5, "many"],
    "warmup_requests": [-1, 1001, 1.5],
    "max_tokens": [0, 4097, "many"],
    "cache": ["hot", "", None, 1],
    "slo_ttft_ms": [0, -5, 600001, "2s"],
    "slo_tpot_ms": [0, 60001, None],
    "browser_requests": [-1, 1001, 2.5, "3", None],
    "ew_duration_s": [0, 0.5, 301, "3"],
    "ew_streams": [0, 129, 1.5],
    "ew_samples": [0, 21, "3"],
    "keep_deployment": ["yes", 1, None],
    "north_south_from": ["moon", "", None],
    "workers": [-1, 65, 1.5, "2"],
    "client_pods": [0, 65, 2.5, "3", None],
    "regression_threshold_pct": [0, -10, 1001, "10%"],
    "regression_baseline_runs": [2, 0, 101, 7.5],
    "fail_on_regression": ["true", 0, None],
}
GOOD_VALUES = {
    "targets": [["local"], [t.name for t in load_targets().targets]],
    "load_mode": ["concurrent", "poisson", "sweep"],
    "sweep_levels": [[1], [1, 4, 16, 64]],
    "concurrency": [1, 1024],
    "rate_rps": [0.1, 10000],
    "requests": [1, 100000],
    "max_tokens": [1, 4096],
    "cache": ["cold", "warm"],
    "regression_threshold_pct": [0.5, 1000],
    "regression_baseline_runs": [3, 100],
    "north_south_from": ["cluster"],
    "browser_requests": [0, 1, 1000],
    "workers": [0, 1, 64],
    "client_pods": [1, 64],
}
NUMERIC = ("integer", "number")


@pytest.fixture(scope="module")
def params(checked_in_dag):
    return checked_in_dag.params


def test_every_param_has_a_bad_value_case(params):
    assert set(params.keys()) == set(BAD_VALUES)


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_schema_type_bounds_and_description(params, name):
    schema = params.get_param(name).schema
    assert schema.get("type") in ("string", "integer", "number", "boolean", "array"), name
    assert len(params.get_param(name).description or "") >= 20, f"{name}: say what it does"
    if schema["type"] in NUMERIC:
        assert "minimum" in schema or "exclusiveMinimum" in schema, name
        assert "maximum" in schema or "exclusiveMaximum" in schema, name
    if schema["type"] == "string":
        assert schema.get("enum"), name
    if schema["type"] == "array":
        assert schema.get("minItems") == 1 and schema.get("items", {}).get("type"), name
        items = schema["items"]
        assert items.get("enum") or ("minimum" in items and "maximum" in items), name


def test_targets_are_the_configured_ones(params):
    schema = params.get_param("targets").schema
    assert schema["items"]["enum"] == load_targets().names()
    assert params["targets"] == load_targets().default_targets


def test_targets_are_offered_as_a_multi_select(params):
    """Airflow's trigger form shows a multi-select for an array Param that lists its choices in
    `examples` (a free-text area otherwise)."""
    assert params.get_param("targets").schema["examples"] == load_targets().names()


def test_the_dag_params_are_the_run_params(params):
    """One definition: the DAG's Params are ragbench.run_params, name for name, in order."""
    from ragbench.run_params import run_params

    defined = run_params(load_targets())
    assert list(params.keys()) == [p.name for p in defined]
    for p in defined:
        param = params.get_param(p.name)
        assert params[p.name] == p.default, p.name
        assert param.description == p.description, p.name
        assert {k: v for k, v in param.schema.items() if k != "description"} == p.schema, p.name


def test_cache_is_cold_by_default(params):
    assert params["cache"] == "cold"
    assert params.get_param("cache").schema["enum"] == ["cold", "warm"]


@pytest.mark.parametrize("name,value", [(n, v) for n, values in BAD_VALUES.items() for v in values])
def test_bad_values_are_refused(params, name, value):
    from airflow.sdk.exceptions import ParamValidationError

    param = copy.deepcopy(params.get_param(name))  # resolve() keeps the value it accepts
    with pytest.raises(ParamValidationError):
        param.resolve(value)


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_defaults_and_good_values_pass(params, name):
    for value in [params[name], *GOOD_VALUES.get(name, [])]:
        param = copy.deepcopy(params.get_param(name))  # resolve() keeps the value it accepts
        assert param.resolve(value) == value


def test_the_regression_defaults(params):
    assert (params["regression_threshold_pct"], params["regression_baseline_runs"], params["fail_on_regression"]) \
        == (10.0, 7, False)
