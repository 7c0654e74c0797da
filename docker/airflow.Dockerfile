# syntax=docker/dockerfile:1
#
# The orchestrator image: Airflow 3 with the project's `orchestrator` extra (providers, results
# database client, kubectl and kubernetes-validate) and the project's DAGs, plugins, configuration
# and SQL migrations. It runs as the image's non-root `airflow` user; its entrypoint is unchanged.
#
# Build from the repository root (see docs/kubernetes.md for the .dockerignore to use):
#   docker build -f docker/airflow.Dockerfile -t ghcr.io/ragbench/ragbench-airflow:0.1.0 .
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11

# --- build: the project's wheel (no dependencies) --------------------------------------------
FROM ${AIRFLOW_IMAGE} AS build
USER airflow
COPY --chown=airflow:0 pyproject.toml README.md /home/airflow/src/
COPY --chown=airflow:0 plugins/ /home/airflow/src/plugins/
COPY --chown=airflow:0 workload/ /home/airflow/src/workload/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /home/airflow/wheels /home/airflow/src

# --- runtime ----------------------------------------------------------------------------------
FROM ${AIRFLOW_IMAGE} AS runtime
LABEL org.opencontainers.image.title="ragbench-airflow" \
      org.opencontainers.image.description="RAG benchmark orchestrator: Airflow with the ragbench DAGs"

# Airflow's image installs Python packages as the airflow user, never as root. The extra pins
# apache-airflow itself, so pip cannot move Airflow to another version while resolving.
USER airflow
RUN --mount=type=bind,from=build,source=/home/airflow/wheels,target=/tmp/wheels \
    pip install --no-cache-dir "$(ls /tmp/wheels/ragbench-*.whl)[orchestrator]" \
    && kubectl version --client=true

# The repository's layout under AIRFLOW_HOME (/opt/airflow): dags/ and plugins/ where Airflow
# looks for them, config/ (targets, prices), sql/ (migrations, views) and k8s/ next to them.
COPY --chown=airflow:0 dags/ /opt/airflow/dags/
COPY --chown=airflow:0 plugins/ /opt/airflow/plugins/
COPY --chown=airflow:0 config/ /opt/airflow/config/
COPY --chown=airflow:0 sql/ /opt/airflow/sql/
# The manifests: the preflight renders the target's overlay (kubectl kustomize, from the orchestrator
# extra) to know the vLLM image it checks the GPU nodes' driver against.
COPY --chown=airflow:0 k8s/ /opt/airflow/k8s/
ENV RAGBENCH_HOME=/opt/airflow \
    RAGBENCH_K8S_DIR=/opt/airflow/k8s

USER airflow
