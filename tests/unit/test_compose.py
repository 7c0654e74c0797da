"""docker-compose.yaml, .env.example, the Postgres init script and the Grafana files, checked
without a container engine: what `docker compose up` would need from the repository is there and
agrees with itself. (That the stack starts can only be seen with an engine.)"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (ROOT / "docker-compose.yaml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)  # PyYAML applies the `<<` merge keys as compose does
SERVICES = COMPOSE["services"]
INIT_SCRIPT = ROOT / "docker" / "postgres-init" / "10-ragbench.sh"
GRAFANA = ROOT / "grafana"

# ${VAR}, ${VAR:-default}, ${VAR:?message}, $VAR; `$$` is a literal dollar sign for the container.
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def compose_variables(text: str) -> dict[str, set[str]]:
    """Variable -> the operators it is used with ('' for plain, ':-', ':?', ...)."""
    found: dict[str, set[str]] = {}
    for m in _VAR.finditer(text.replace("$$", "")):
        found.setdefault(m.group(1) or m.group(4), set()).add(m.group(2) or "")
    return found


def env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f".env.example: bad line {line!r}"
            assert " #" not in value, f".env.example: keep comments on their own lines ({key})"
            pairs[key] = value
    return pairs


def bind_mounts():
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/")):
                target = volume["target"] if isinstance(volume, dict) else volume.split(":")[1]
                yield name, source, target


def test_compose_variable_parser():
    got = compose_variables("a ${A} b ${B:-x} c ${C:?set C} d $D e $${NOT} f $$G")
    assert got == {"A": {""}, "B": {":-"}, "C": {":?"}, "D": {""}}


def test_every_variable_is_documented_in_env_example_and_every_documented_one_used():
    used, documented = set(compose_variables(COMPOSE_TEXT)), set(env_example())
    assert used - documented == set(), "referenced in docker-compose.yaml, missing from .env.example"
    assert documented - used == set(), "in .env.example but never used by docker-compose.yaml"


def test_secrets_come_from_the_environment_and_are_required():
    ops = compose_variables(COMPOSE_TEXT)
    secret = re.compile(r"PASSWORD|SECRET|FERNET")
    for var, used_with in ops.items():
        if secret.search(var):
            assert used_with == {":?"}, f"{var}: a secret must be required (${{{var}:?...}}), never defaulted"
    for name, service in SERVICES.items():
        for key, value in (service.get("environment") or {}).items():
            if secret.search(key) and "_FILE" not in key:
                assert "${" in str(value), f"{name}: {key} is written in docker-compose.yaml"
    assert all(v == "" for k, v in env_example().items() if secret.search(k)), ".env.example holds a secret"


def test_bind_mounted_paths_exist_in_the_repository():
    mounts = list(bind_mounts())
    assert {s for _, s, _ in mounts} >= {"./dags", "./plugins", "./config", "./sql", "./docker/postgres-init",
                                         "./grafana/provisioning", "./grafana/dashboards"}
    for name, source, _ in mounts:
        assert not source.startswith("/"), f"{name}: {source} is a path of one machine"
        assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_named_volumes_are_declared():
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith((".", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_ports_listen_on_localhost_only():
    published = [(n, p) for n, s in SERVICES.items() for p in s.get("ports", [])]
    assert {n for n, _ in published} == {"postgres", "airflow-apiserver", "grafana"}
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_dependencies_wait_for_health_or_completion():
    for name, service in SERVICES.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for dep, spec in depends.items():
            assert dep in SERVICES and dep != name
            condition = spec["condition"]
            assert condition in ("service_healthy", "service_completed_successfully"), f"{name} -> {dep}"
            if condition == "service_healthy":
                assert "test" in SERVICES[dep].get("healthcheck", {}), f"{dep} has dependents but no healthcheck"
            else:
                assert SERVICES[dep].get("restart") == "no", f"{dep} runs to completion: restart must be no"
    needed = {d for s in SERVICES.values() for d in (s.get("depends_on") or {})}
    assert needed >= {"postgres", "airflow-init", "airflow-apiserver"}
    assert all("healthcheck" in s for n, s in SERVICES.items() if n != "airflow-init"), "long-running: healthcheck"


def test_airflow_services_share_one_image_and_configuration():
    airflow = {n: s for n, s in SERVICES.items() if n.startswith("airflow-")}
    assert set(airflow) == {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                            "airflow-triggerer"}
    for name, service in airflow.items():
        assert service["build"]["dockerfile"] == "docker/airflow.Dockerfile"
        assert (ROOT / service["build"]["dockerfile"]).is_file()
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["RAGBENCH_DATABASE_URL"].startswith("postgresql://ragbench:")
        assert env["RAGBENCH_DATABASE_URL"].endswith("@postgres:5432/ragbench")
        targets = {t for _, s, t in bind_mounts() if _ == name}
        assert targets >= {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/config", "/opt/airflow/sql"}
    commands = {n: s.get("command") for n, s in airflow.items()}
    assert commands["airflow-apiserver"] == "api-server" and commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor" and commands["airflow-triggerer"] == "triggerer"
    init = " ".join(commands["airflow-init"])
    for step in ("airflow db migrate", "ragbench db migrate", "ragbench costs load", "passwords.json"):
        assert step in init


def test_init_creates_the_measuring_pool_the_dag_uses():
    import shlex

    from ragbench.steps import MEASURE_POOL, MEASURE_POOL_DESCRIPTION, MEASURE_POOL_SLOTS

    script = SERVICES["airflow-init"]["command"][-1]
    lines = [shlex.split(line) for line in script.splitlines() if line.strip().startswith("airflow pools set")]
    assert lines == [["airflow", "pools", "set", MEASURE_POOL, str(MEASURE_POOL_SLOTS), MEASURE_POOL_DESCRIPTION]]
    # after the metadata schema exists
    assert script.index("airflow db migrate") < script.index("airflow pools set")


def test_images_are_pinned():
    for name, service in SERVICES.items():
        image = service.get("image", "")
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), f"{name}: {image!r}"


def test_postgres_runs_the_init_script_with_what_it_needs():
    pg = SERVICES["postgres"]
    assert any(t == "/docker-entrypoint-initdb.d" and s == "./docker/postgres-init" for n, s, t in bind_mounts()
               if n == "postgres")
    assert os.access(INIT_SCRIPT, os.X_OK), "the entrypoint runs executable scripts (others are sourced)"
    required = set(re.findall(r"\$\{([A-Z_]+):\?\}", INIT_SCRIPT.read_text()))
    assert len(required) == 8 and required <= set(pg["environment"])
    env = pg["environment"]
    # the names the other services use are the ones the script creates
    assert env["RAGBENCH_DB_USER"] == env["RAGBENCH_DB_NAME"] == "ragbench"
    assert "airflow:" in SERVICES["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert SERVICES["grafana"]["environment"]["RAGBENCH_GRAFANA_DB_USER"] == env["GRAFANA_DB_USER"]
    assert "ragbench_reader" in INIT_SCRIPT.read_text()
    assert "'ragbench_reader'" in (ROOT / "sql" / "views" / "990_grants.sql").read_text()
    assert pg["image"].startswith("postgres:18")
    assert any(t == "/var/lib/postgresql" for t in [v.split(":")[1] for v in pg["volumes"]])


# --- Grafana -------------------------------------------------------------------------------------

DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "ragbench.yaml").read_text())
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ragbench.yaml").read_text())
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def test_datasource_is_the_read_only_role_from_the_environment():
    (ds,) = DATASOURCES["datasources"]
    assert ds["type"] == "grafana-postgresql-datasource" and ds["uid"] == "ragbench"
    text = (GRAFANA / "provisioning" / "datasources" / "ragbench.yaml").read_text()
    needed = set(compose_variables(text))
    assert needed == {"RAGBENCH_GRAFANA_DB_HOST", "RAGBENCH_GRAFANA_DB_NAME", "RAGBENCH_GRAFANA_DB_USER",
                      "RAGBENCH_GRAFANA_DB_PASSWORD"}
    assert needed <= set(SERVICES["grafana"]["environment"]), "Grafana's environment must set them"
    assert ds["secureJsonData"]["password"].startswith("${")


def test_dashboard_provider_points_at_the_mounted_dashboards():
    (provider,) = PROVIDERS["providers"]
    assert provider["type"] == "file"
    mounted = {s: t for n, s, t in bind_mounts() if n == "grafana"}
    assert provider["options"]["path"] == mounted["./grafana/dashboards"]
    home = SERVICES["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(provider["options"]["path"] + "/")
    assert (GRAFANA / "dashboards" / Path(home).name).is_file()


def test_dashboards_parse_and_have_unique_uids_and_titles():
    assert len(DASHBOARDS) >= 7
    dashboards = [json.loads(p.read_text()) for p in DASHBOARDS]
    uids = [d["uid"] for d in dashboards]
    titles = [d["title"] for d in dashboards]
    assert all(uids) and all(titles)
    assert len(set(uids)) == len(uids) and len(set(titles)) == len(titles)
    for path, d in zip(DASHBOARDS, dashboards, strict=True):
        assert d["panels"], path.name
        ids = [p["id"] for p in d["panels"]]
        assert len(set(ids)) == len(ids), f"{path.name}: panel ids repeat"
        for panel in d["panels"]:
            assert panel["datasource"]["uid"] == "ragbench", f"{path.name}: {panel['title']}"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "ragbench" and target["rawSql"].strip()
                assert target["format"] in ("time_series", "table")
        (var,) = d["templating"]["list"]
        assert var["name"] == "target" and var["multi"] and "FROM v_targets" in var["query"]
