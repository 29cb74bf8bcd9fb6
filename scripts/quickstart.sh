#!/usr/bin/env bash
# The main job on the embedded default model: install what is missing, build servelab, and compare
# static with continuous batching on a built-in trace shaped like the Azure conversation trace
# (`servelab compare`: a table, compare-results/report.md and its plots). Extra arguments go to
# `servelab compare`, e.g. `scripts/quickstart.sh --requests 80 --rate 2`; with `generate` first
# they go to `servelab generate` instead:
#   scripts/quickstart.sh generate --prompt "One day, a little fox" --temperature 0.8 --seed 3
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== building servelab (build/)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSERVELAB_CUDA=OFF > build.configure.log 2>&1 \
  || { cat build.configure.log; exit 1; }
rm -f build.configure.log
cmake --build build --target servelab -j "$(nproc)" 2>&1 | grep -E "error|warning|Built target servelab" || true
test -x build/servelab || { echo "quickstart: the build failed (run: cmake --build build --target servelab)"; exit 1; }

if [ "${1:-}" = generate ]; then
  shift
  echo "== servelab generate (embedded model: models/servelab-stories, greedy)"
  if [ $# -eq 0 ]; then set -- --prompt "Once upon a time" --max-tokens 300; fi
  exec build/servelab generate "$@"
fi
echo "== servelab compare: static against continuous batching (embedded model, built-in trace)"
exec build/servelab compare "$@"
