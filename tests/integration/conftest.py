"""A fresh database for every results-store test (on the session's server, see tests/conftest.py)."""

from __future__ import annotations

import textwrap

import pytest


@pytest.fixture
def database_url(pg_url_factory):
    return pg_url_factory()


@pytest.fixture
def engine(database_url):
    from ragbench import db

    eng = db.connect(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def lab_target(tmp_path, monkeypatch):
    """``lab_target(store_keys)``: a generic cluster target `lab` whose results-store keys are
    ``store_keys`` (YAML flow-mapping text), in a config every task of this process reads."""

    def make(store_keys: str):
        config = tmp_path / "config"
        config.mkdir()
        (config / "targets.yaml").write_text(textwrap.dedent("""\
            default_targets: [lab]
            targets:
              - {name: lab, kind: kubernetes, provider: generic, region: lab, connection_id: k8s_lab,
                 overlay: k8s/overlays/generic, %s}
            """) % store_keys)
        monkeypatch.setenv("RAGBENCH_CONFIG_DIR", str(config))
        from ragbench.targets import load_targets

        return load_targets().get("lab")

    return make
