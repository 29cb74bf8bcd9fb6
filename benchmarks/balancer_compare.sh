#!/usr/bin/env bash
# The load balancer's policies compared on a synthetic load: three servers of one batching kind
# behind `servelab balance`, the same closed-loop load (servelab_bench_balancer_load) once per
# policy, switched by editing the balancer's config (hot reload). Writes one JSON per run and a
# markdown table into OUT.
#
#   benchmarks/balancer_compare.sh [--build DIR] [--device cpu|cuda] [--out DIR]
#                                  [--batching static,continuous] [--requests N] [--concurrency C]
set -euo pipefail
cd "$(dirname "$0")/.."
build=build
device=cpu
out=benchmarks/results/raw/balancer-$(date +%F)
kinds=static,continuous
requests=240
concurrency=24
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --batching) kinds=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    *) echo "balancer_compare: unknown option $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
servelab=$build/servelab
load=$build/servelab_bench_balancer_load
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# start_and_wait LOG COMMAND...: runs it in the background, waits for "ready"/"listening" in LOG.
start_and_wait() {
  local log=$1; shift
  "$@" >"$log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do
    if grep -q "servelab serve: ready\|servelab balance: listening" "$log"; then return 0; fi
    sleep 0.1
  done
  echo "balancer_compare: $* did not start:" >&2; cat "$log" >&2; exit 1
}

echo "| servers | policy | requests/s | p50 (s) | p90 (s) | p99 (s) | short p90 (s) |" >"$out/table.md"
echo "| --- | --- | --- | --- | --- | --- | --- |" >>"$out/table.md"
port=18700
for kind in ${kinds//,/ }; do
  urls=()
  for i in 1 2 3; do
    port=$((port + 1))
    extra=()
    if [ "$kind" = continuous ]; then extra=(--num-gpu-blocks 2048 --num-cpu-blocks 0); fi
    start_and_wait "$out/server-$kind-$i.log" "$servelab" serve --batching "$kind" --device "$device" \
      --port "$port" --max-inflight 256 "${extra[@]}"
    urls+=("\"http://127.0.0.1:$port\"")
  done
  port=$((port + 1))
  balancer_port=$port
  config=$out/balancer-$kind.json
  servers=$(IFS=,; echo "${urls[*]}")
  echo "{\"servers\": [$servers], \"policy\": \"round_robin\"}" >"$config"
  start_and_wait "$out/balancer-$kind.log" "$servelab" balance --config "$config" --port "$balancer_port"
  for policy in round_robin least_outstanding least_workload; do
    echo "{\"servers\": [$servers], \"policy\": \"$policy\"}" >"$config"
    sleep 1.5  # the watcher notices the edit within 0.25 s
    echo "--- $kind servers, $policy"
    "$load" --url "http://127.0.0.1:$balancer_port" --requests "$requests" \
      --concurrency "$concurrency" --json "$out/$kind-$policy.json"
    python3 - "$out/$kind-$policy.json" "$kind" "$policy" >>"$out/table.md" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"| 3 × {sys.argv[2]} | {sys.argv[3]} | {d['requests_per_second']:.1f} | {d['latency_p50_s']:.3f} | "
      f"{d['latency_p90_s']:.3f} | {d['latency_p99_s']:.3f} | {d['short_latency_p90_s']:.3f} |")
PY
  done
  cleanup
  pids=()
  sleep 0.5
done
cat "$out/table.md"
