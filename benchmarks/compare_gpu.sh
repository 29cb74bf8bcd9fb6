#!/usr/bin/env bash
# The batching comparison on a GPU (issue 9): `servelab compare` with a Llama-3-8B-shaped random
# bf16 checkpoint on a window of the Azure LLM inference trace 2023 (conversation), lengths as in
# the trace, at the trace's own rate. Run from the repository root on the GPU machine.
#
# The trace is not part of the project (see docs/replay.md for where to get it): pass its path
# with --trace. The checkpoint (16 GB) is written once by benchmarks/make_random_llama.py.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: benchmarks/compare_gpu.sh [--phase build|model|compare|preempt|all] [options]

  --phase P        build: servelab with CUDA (scripts/gpu_check.sh --build-only --target servelab)
                   model: write the random checkpoint unless it is there
                   compare: the three servers on the trace window, with a KV pool that holds
                            the load
                   preempt: swap against recompute with a KV pool too small for the load
                   all (default): every phase in turn
  --trace FILE     the Azure conversation trace (azure_llm_2023_conv.csv)
  --window A:B     the trace's seconds to replay (default 600:630)
  --model DIR      where the checkpoint is (default /tmp/servelab-llama3-8b-random)
  --out DIR        results (default build-gpu/compare-gpu); one folder per phase
  --max-batch N    the most sequences per forward call, for every server (default 32)
  --build-dir DIR  (default build-gpu)
EOF
}

cd "$(dirname "$0")/.."
phase=all
trace=""
window=600:630
model=/tmp/servelab-llama3-8b-random
out=build-gpu/compare-gpu
max_batch=32
build_dir=build-gpu
while [ $# -gt 0 ]; do
  case "$1" in
    --phase) phase=$2; shift 2 ;;
    --trace) trace=$2; shift 2 ;;
    --window) window=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --max-batch) max_batch=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "compare_gpu: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

wants() { [ "$phase" = all ] || [ "$phase" = "$1" ]; }

if wants build; then
  echo "=== compare_gpu: build"
  scripts/gpu_check.sh --build-only --target servelab --build-dir "$build_dir" --time-budget 0
fi

if wants model; then
  if [ -f "$model/config.json" ]; then
    echo "=== compare_gpu: the checkpoint is already in $model"
  else
    echo "=== compare_gpu: writing the random checkpoint to $model"
    python3 benchmarks/make_random_llama.py "$model"
  fi
fi

# The libraries gpu_check.sh unpacked from .carry/debs, when it did.
deps=/tmp/servelab-deps
if [ -d "$deps/usr/lib" ]; then
  multiarch=$(basename "$(dirname "$(ls -d "$deps"/usr/lib/*/openblas-pthread | head -1)")")
  export LD_LIBRARY_PATH="$deps/usr/lib/$multiarch:$deps/usr/lib/$multiarch/openblas-pthread:$deps/lib/$multiarch${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

compare() {
  local name=$1
  shift
  if [ -z "$trace" ]; then echo "compare_gpu: --trace FILE is required" >&2; exit 2; fi
  mkdir -p "$out"
  echo "=== compare_gpu: $name"
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/$name.device.txt"
  "$build_dir/servelab" compare --model "$model" --device cuda --format azure --trace "$trace" \
    --window "$window" --length-scale 1 --max-batch "$max_batch" --batch-max-tokens 8192 \
    --out "$out/$name" "$@"
}

# 16,000 blocks of 16 tokens (256,000 tokens, 31 GiB of bf16 KV) hold the window's load with room
# to spare; 600 blocks (9,600 tokens) hold a few long conversations only, so the continuous
# servers must preempt.
if wants compare; then compare compare --num-gpu-blocks 16000 --num-cpu-blocks 4000; fi
if wants preempt; then
  compare preempt --servers continuous-swap,continuous-recompute --num-gpu-blocks 600 \
    --num-cpu-blocks 4000
fi
