"""The cost file (config/costs.yaml): validation with one-line errors naming the field, and the
cost_inputs rows a price set becomes."""

from __future__ import annotations

import textwrap
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from ragbench.costs import GB, GB_MONTH, HOURLY, default_path, load_costs, parse_costs
from ragbench.errors import RagbenchError
from ragbench.paths import config_dir
from ragbench.targets import TargetsConfig, load_targets

pytestmark = pytest.mark.unit

PATH = Path("config/costs.yaml")  # shown as given: the messages read "config/costs.yaml: ..."

TARGETS = TargetsConfig.model_validate({"targets": [
    {"name": "local", "kind": "local", "provider": "local"},
    {"name": "aws-eks", "kind": "kubernetes", "provider": "aws-eks", "connection_id": "kube_aws",
     "overlay": "k8s/overlays/aws-eks", "node_pools": [
         {"name": "gpu", "instance_type": "g6.xlarge", "count": 1, "gpu": True, "pricing_key": "gpu_node"},
         {"name": "cpu", "instance_type": "t3.medium", "count": 2, "pricing_key": "cpu_node"}]},
    {"name": "lke", "kind": "kubernetes", "provider": "akamai-lke", "connection_id": "kube_lke",
     "overlay": "k8s/overlays/akamai-lke"},
]})

VALID = """\
aws-eks:
  - as_of: 2026-01-30
    source: list price 2026-01-30
    notes: on-demand
    node_pools:
      - component: gpu_node
        instance_type: g6.xlarge
        gpu: true
        count: 1
        usd_per_hour: 0.8048
      - component: cpu_node
        instance_type: t3.medium
        count: 2
        usd_per_hour: 0.0416
    control_plane:
      usd_per_hour: 0.10
    nat_gateway:
      usd_per_hour: 0.045
      usd_per_gb: 0.045
    storage:
      usd_per_gb_month: 0.08
      gb: 60
      source: https://aws.amazon.com/ebs/pricing/
    egress:
      usd_per_gb: 0.09
local:
  - as_of: 2026-01-01
    source: default
    node_pools:
      - component: machine
        instance_type: this-machine
        count: 1
        usd_per_hour: 0
"""


def parse(text: str, targets: TargetsConfig = TARGETS):
    return parse_costs(textwrap.dedent(text), PATH, targets)


def error_of(text: str, targets: TargetsConfig = TARGETS) -> str:
    with pytest.raises(RagbenchError) as info:
        parse(text, targets)
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    exc = info.value
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)  # no chained traceback
    return message


def edit(old: str, new: str, text: str = VALID) -> str:
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


# --- a valid file -------------------------------------------------------------------------------

def test_valid_file_rows():
    inputs = parse(VALID)
    assert sorted(inputs.providers) == ["aws-eks", "local"]
    rows = {(r.provider, r.as_of, r.component): r for r in inputs.rows()}
    jan = date(2026, 1, 30)
    assert [(r.component, r.unit, r.price_usd, r.quantity) for r in inputs.rows() if r.provider == "aws-eks"] == [
        ("gpu_node", HOURLY, 0.8048, 1),
        ("cpu_node", HOURLY, 0.0416, 2),
        ("control_plane", HOURLY, 0.10, 1),
        ("nat_gateway", HOURLY, 0.045, 1),
        ("nat_gateway_data", GB, 0.045, 1),  # per-GB prices: quantity 1 = the price of one GB
        ("storage", GB_MONTH, 0.08, 60),     # quantity = the GB provisioned
        ("egress", GB, 0.09, 1),
    ]
    assert rows["aws-eks", jan, "gpu_node"].source == "1 x g6.xlarge (GPU); on-demand; list price 2026-01-30"
    assert rows["aws-eks", jan, "cpu_node"].source == "2 x t3.medium; on-demand; list price 2026-01-30"
    assert rows["aws-eks", jan, "storage"].source == \
        "60 GB provisioned; https://aws.amazon.com/ebs/pricing/; on-demand; list price 2026-01-30"
    assert rows["local", date(2026, 1, 1), "machine"].price_usd == 0
    params = rows["aws-eks", jan, "gpu_node"].params()
    assert (params["price_usd"], params["quantity"]) == (Decimal("0.8048"), Decimal("1"))  # exact, no float noise


def test_hourly_sum_of_a_set():
    inputs = parse(VALID)
    # 0.8048 x 1 + 0.0416 x 2 + 0.10 + 0.045 = 1.0330 (the per-GB prices are not hourly)
    assert inputs.providers["aws-eks"][0].hourly_usd() == Decimal("1.0330")
    assert inputs.providers["local"][0].hourly_usd() == 0


def test_checked_in_cost_file_is_valid_against_the_checked_in_targets():
    inputs = load_costs(default_path(), load_targets())
    assert default_path() == config_dir() / "costs.yaml"
    assert {"akamai-lke", "aws-eks", "gcp-gke", "local"} <= set(inputs.providers)
    hourly = {p: sets[-1].hourly_usd() for p, sets in inputs.providers.items()}
    assert hourly["akamai-lke"] == Decimal("0.592")    # 0.52 + 0.036 x 2 + 0 (control plane)
    assert hourly["aws-eks"] == Decimal("1.0330")      # 0.8048 + 0.0416 x 2 + 0.10 + 0.045 (NAT)
    assert hourly["gcp-gke"] == Decimal("1.0876")      # 0.8536 + 0.067 x 2 + 0.10 (management)
    assert hourly["local"] == 0                        # the default price of the local machine
    for provider in ("akamai-lke", "aws-eks", "gcp-gke"):
        latest = inputs.providers[provider][-1]
        assert latest.as_of == date(2026, 1, 30)
        assert [(p.component, p.count) for p in latest.node_pools] == [("gpu_node", 1), ("cpu_node", 2)]
        assert latest.storage is not None and latest.storage.gb == 60  # 50Gi model cache + 10Gi Qdrant
        assert latest.load_balancer is None  # no list price was given: left out (docs/cost-model.md)
    assert inputs.providers["aws-eks"][-1].nat_gateway.usd_per_gb == 0.045


def test_a_second_dated_set_is_accepted():
    second = VALID.replace("local:\n", "  - as_of: 2026-06-01\n    source: later\n    node_pools:\n"
                                       "      - {component: gpu_node, instance_type: g6.xlarge, count: 1, "
                                       "usd_per_hour: 0.7}\n"
                                       "      - {component: cpu_node, instance_type: t3.medium, count: 2, "
                                       "usd_per_hour: 0.0416}\nlocal:\n", 1)
    inputs = parse(second)
    assert [s.as_of for s in inputs.providers["aws-eks"]] == [date(2026, 1, 30), date(2026, 6, 1)]


# --- every validation error, one line naming the field ------------------------------------------

@pytest.mark.parametrize(("old", "new", "message"), [
    # a negative price
    ("usd_per_hour: 0.8048", "usd_per_hour: -0.8048",
     "aws-eks[2026-01-30].node_pools[0].usd_per_hour: must be >= 0"),
    ("usd_per_gb: 0.09", "usd_per_gb: -1", "aws-eks[2026-01-30].egress.usd_per_gb: must be >= 0"),
    ("usd_per_gb_month: 0.08", "usd_per_gb_month: -0.08",
     "aws-eks[2026-01-30].storage.usd_per_gb_month: must be >= 0"),
    # a missing price: no key, or a key without a value
    ("        count: 2\n        usd_per_hour: 0.0416\n", "        count: 2\n",
     "aws-eks[2026-01-30].node_pools[1].usd_per_hour: required"),
    ("    control_plane:\n      usd_per_hour: 0.10\n", "    control_plane:\n      usd_per_hour:\n",
     "aws-eks[2026-01-30].control_plane.usd_per_hour: required"),
    ("    control_plane:\n      usd_per_hour: 0.10\n", "    control_plane:\n      count: 1\n",
     "aws-eks[2026-01-30].control_plane.usd_per_hour: required"),
    ("      gb: 60\n", "", "aws-eks[2026-01-30].storage.gb: required"),
    # not a number
    ("usd_per_hour: 0.8048", "usd_per_hour: '0.8048'",
     "aws-eks[2026-01-30].node_pools[0].usd_per_hour: must be a number, not '0.8048'"),
    ("usd_per_hour: 0.8048", "usd_per_hour: .inf",
     "aws-eks[2026-01-30].node_pools[0].usd_per_hour: must be a number, not inf"),
    ("usd_per_hour: 0.8048", "usd_per_hour: yes",
     "aws-eks[2026-01-30].node_pools[0].usd_per_hour: must be a number, not True"),
    ("count: 2", "count: 2.5", "aws-eks[2026-01-30].node_pools[1].count: must be a whole number, not 2.5"),
    ("count: 2", "count: -1", "aws-eks[2026-01-30].node_pools[1].count: must be >= 0"),
    # more precision than the database keeps
    ("usd_per_hour: 0.8048", "usd_per_hour: 0.80481234",
     "aws-eks[2026-01-30].node_pools[0].usd_per_hour: at most 6 decimal places (the database keeps 6)"),
    ("gb: 60", "gb: 60.0005", "aws-eks[2026-01-30].storage.gb: at most 3 decimal places (the database keeps 3)"),
    # a bad date
    ("as_of: 2026-01-30", "as_of: 2026-02-30", "aws-eks[2026-02-30].as_of: '2026-02-30' is not a date (YYYY-MM-DD)"),
    ("as_of: 2026-01-30", "as_of: 2026-1-30", "aws-eks[2026-1-30].as_of: '2026-1-30' is not a date (YYYY-MM-DD)"),
    ("as_of: 2026-01-30", "as_of: 2026-01-30T10:00:00",
     "aws-eks[2026-01-30T10:00:00].as_of: '2026-01-30T10:00:00' is not a date (YYYY-MM-DD)"),
    ("as_of: 2026-01-30", "as_of: 20260130", "aws-eks[#0].as_of: 20260130 is not a date (YYYY-MM-DD)"),
    ("  - as_of: 2026-01-30\n", "  - when: 2026-01-30\n",
     "aws-eks[#0].when: unknown field (known: as_of, source, notes, node_pools, control_plane, load_balancer, "
     "nat_gateway, storage, egress)"),
    # other structure
    ("    source: list price 2026-01-30\n", "", "aws-eks[2026-01-30].source: required"),
    ("    source: list price 2026-01-30\n", "    source: ''\n", "aws-eks[2026-01-30].source: must not be empty"),
    ("      usd_per_gb: 0.045\n", "      usd_per_gb: 0.045\n      usd_per_month: 3\n",
     "aws-eks[2026-01-30].nat_gateway.usd_per_month: unknown field (known: usd_per_hour, count, source, notes, "
     "usd_per_gb)"),
    ("    nat_gateway:\n      usd_per_hour: 0.045\n", "    nat_gateway:\n      usd_per_hr: 0.045\n",
     "aws-eks[2026-01-30].nat_gateway.usd_per_hr: unknown field (known: usd_per_hour, count, source, notes, "
     "usd_per_gb)"),
    ("component: gpu_node", "component: GPU node",
     "aws-eks[2026-01-30].node_pools[0].component: 'GPU node' must match ^[a-z][a-z0-9_]{0,40}$"),
    ("        instance_type: g6.xlarge\n", "",
     "aws-eks[2026-01-30].node_pools[0].instance_type: required"),
    ("local:\n", "akamai-lke: {as_of: 2026-01-30}\nlocal:\n", "akamai-lke: must be a list of price sets"),
])
def test_validation_errors(old, new, message):
    assert error_of(edit(old, new)) == f"config/costs.yaml: {message}"


def test_unknown_provider():
    assert error_of(edit("aws-eks:", "aws-ekss:")) == (
        "config/costs.yaml: aws-ekss: unknown provider (the providers of config/targets.yaml: "
        "akamai-lke, aws-eks, local)")


def test_a_provider_without_targets_is_unknown():
    only_local = TargetsConfig.model_validate({"targets": [{"name": "local", "kind": "local", "provider": "local"}]})
    assert error_of(VALID, only_local) == (
        "config/costs.yaml: aws-eks: unknown provider (the providers of config/targets.yaml: local)")


def test_no_node_pools():
    start = VALID.index("    node_pools:")
    end = VALID.index("    control_plane:")
    text = VALID[:start] + "    node_pools: []\n" + VALID[end:]
    assert error_of(text) == "config/costs.yaml: aws-eks[2026-01-30].node_pools: must not be empty"


def test_empty_provider():
    assert error_of(VALID + "akamai-lke: []\n") == "config/costs.yaml: akamai-lke: must not be empty"


def test_two_sets_with_one_date():
    text = VALID.replace("local:\n", "  - as_of: 2026-01-30\n    source: again\n    node_pools:\n"
                                     "      - {component: gpu_node, instance_type: g6.xlarge, count: 1, "
                                     "usd_per_hour: 0.9}\nlocal:\n", 1)
    assert error_of(text) == ("config/costs.yaml: aws-eks[2026-01-30].as_of: two price sets of aws-eks have "
                              "this date")


@pytest.mark.parametrize("component", ["gpu_node", "storage"])
def test_a_component_priced_twice(component):
    text = edit("    control_plane:\n", f"      - {{component: {component}, instance_type: x, count: 1, "
                                       "usd_per_hour: 1}\n    control_plane:\n")
    assert error_of(text) == (f"config/costs.yaml: aws-eks[2026-01-30].node_pools[2].component: {component!r} "
                              "is priced twice in this set")


def test_node_pools_must_match_the_targets():
    # The target declares 2 x t3.medium (pricing_key cpu_node): a set in force today that prices 3 is wrong.
    assert error_of(edit("count: 2", "count: 3")) == (
        "config/costs.yaml: aws-eks[2026-01-30].node_pools: cpu_node is 3 x t3.medium here but 2 x t3.medium "
        "for target 'aws-eks' in config/targets.yaml; price the new topology in a new dated set")
    assert error_of(edit("instance_type: t3.medium", "instance_type: t3.large")) == (
        "config/costs.yaml: aws-eks[2026-01-30].node_pools: cpu_node is 2 x t3.large here but 2 x t3.medium "
        "for target 'aws-eks' in config/targets.yaml; price the new topology in a new dated set")
    assert error_of(edit("component: cpu_node", "component: cpu_pool")) == (
        "config/costs.yaml: aws-eks[2026-01-30].node_pools: no 'cpu_node', the pricing_key of node pool 'cpu' "
        "of target 'aws-eks' in config/targets.yaml")
    extra = edit("    control_plane:\n", "      - {component: spare_node, instance_type: t3.medium, count: 1, "
                                        "usd_per_hour: 0.0416}\n    control_plane:\n")
    assert error_of(extra) == (
        "config/costs.yaml: aws-eks[2026-01-30].node_pools: spare_node is not a node pool of target 'aws-eks' in "
        "config/targets.yaml (no pricing_key names it)")


def test_older_and_future_sets_may_price_another_topology():
    """Only the set pricing runs that start today is held to the targets' pools: history stays as it was,
    and a set announced for a future date may describe the cluster as it will be."""
    old = VALID.replace("count: 2", "count: 3", 1).replace("as_of: 2026-01-30", "as_of: 2025-06-01", 1)
    future = "  - as_of: 2999-01-01\n    source: announced\n    node_pools:\n" \
             "      - {component: gpu_node, instance_type: g7.xlarge, count: 2, usd_per_hour: 1.5}\n"
    text = old.replace("local:\n", VALID.split("aws-eks:\n")[1].split("local:\n")[0] + future + "local:\n", 1)
    inputs = parse(text)
    assert [s.as_of for s in inputs.providers["aws-eks"]] == [date(2025, 6, 1), date(2026, 1, 30),
                                                             date(2999, 1, 1)]


def test_not_yaml():
    assert error_of("aws-eks:\n  - as_of: [2026\n") .startswith("config/costs.yaml is not valid YAML at line 3")


def test_duplicate_provider_key():
    assert error_of(VALID + "aws-eks:\n  - as_of: 2026-02-01\n") == (
        "config/costs.yaml is not valid YAML at line 34, column 1: duplicate key 'aws-eks'")


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_top_level_must_be_a_mapping(text):
    assert error_of(text) == "config/costs.yaml: top level: must be a mapping of provider -> list of price sets"


def test_missing_file(tmp_path):
    with pytest.raises(RagbenchError, match=r"^cannot read cost file .*nope\.yaml: No such file or directory$"):
        load_costs(tmp_path / "nope.yaml", TARGETS)
