#!/usr/bin/env bash
# Regenerates docs/images/report.png, the README's picture of a run report: the first screen
# (1280x900) of the run's report.html, written by `ragbench report` and rendered by headless
# Chromium, then reduced to a 256-colour PNG.
#
#   scripts/render_report_png.sh [RUN_ID]     # default: the newest run in the results database
#
# Needs the orchestrator environment (make setup), a results database holding the run, and
# Chromium (Debian: apt-get install -y chromium).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="${RAGBENCH_STATE_DIR:-$root/.state}/venv-orchestrator/bin"
out="$root/docs/images/report.png"

browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
    echo "Chromium not found (Debian: apt-get install -y chromium)" >&2
    exit 1
fi

if [ $# -gt 0 ]; then written=$("$venv/ragbench" report "$1"); else written=$("$venv/ragbench" report --latest); fi
html=$(printf '%s\n' "$written" | sed -n 's/^report: //p')
echo "report: $html"

sandbox=()
[ "$(id -u)" = 0 ] && sandbox=(--no-sandbox)  # Chromium refuses to run as root with its sandbox
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$browser" --headless "${sandbox[@]}" --disable-gpu --hide-scrollbars --window-size=1280,900 \
    --screenshot="$tmp/screen.png" "file://$html" >/dev/null 2>&1

mkdir -p "$(dirname "$out")"
"$venv/python" - "$tmp/screen.png" "$out" <<'PY'
import sys

from PIL import Image

Image.open(sys.argv[1]).convert("RGB").quantize(colors=256).save(sys.argv[2], optimize=True)
PY
echo "wrote $out ($(($(stat -c %s "$out") / 1024)) KB)"
