#!/usr/bin/env bash
# Runs every GPU benchmark in turn and writes its raw JSON into one folder, with meta.json (device,
# driver, versions, commit and the exact commands); benchmarks/report.py turns the folder into the
# committed report. Usually started by scripts/gpu_check.sh on the GPU machine.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: benchmarks/run_all.sh [--quick] [--out DIR] [--build DIR] [--only LIST] [options]

  --quick                    fewer batch sizes and contexts (about half the time)
  --out DIR                  raw JSON folder (default benchmarks/results/raw/<date>-<gpu>)
  --build DIR                where the benchmark binaries are (default build-gpu)
  --only LIST                a subset of: ceilings,attention,sdpa,model,swap,schedule,hf (default: all, in that
                             order)
  --batch-sizes LIST         decode batch sizes, servelab and HF eager (default 1,8,32,64,128)
  --static-batch-sizes LIST  HF static-cache batch sizes; each compiles for minutes (default 1,64)
  --hf-time-limit S          hf_decode.py starts no run after S seconds (default 0: no limit)
  --step-timeout S           kill any one benchmark after S seconds (default 0: no limit)
  --deadline EPOCH           stop by this time (seconds since 1970, as `date +%s`): each benchmark is
                             killed at it, none starts within 15 s of it, and hf_decode.py starts
                             no run in its last 200 s (gpu_check.sh sets it from its time budget)
The files: meta.json ceilings.json attention.json sdpa.json model_decode.json model_prefill.json
swap.json model_swapstep.json model_schedule.json hf_decode.json. A rerun of a subset replaces only that subset's files, except hf_decode.json, which
keeps the earlier runs (same device) that the rerun does not measure again.
Native binaries run with $SERVELAB_LD_LIBRARY_PATH prepended to LD_LIBRARY_PATH (gpu_check.sh
sets it to the unpacked .carry libraries); Python ones do not.
EOF
}

cd "$(dirname "$0")/.."
quick=0
out=""
build="build-gpu"
only="ceilings,attention,sdpa,model,swap,schedule,hf"
batch_sizes=""
static_batch_sizes=""
hf_time_limit=0
step_timeout=0
deadline=0
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --batch-sizes) batch_sizes=$2; shift 2 ;;
    --static-batch-sizes) static_batch_sizes=$2; shift 2 ;;
    --hf-time-limit) hf_time_limit=$2; shift 2 ;;
    --step-timeout) step_timeout=$2; shift 2 ;;
    --deadline) deadline=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_all: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
for name in ${only//,/ }; do
  case "$name" in
    ceilings|attention|sdpa|model|swap|schedule|hf) ;;
    *) echo "run_all: --only: unknown benchmark '$name'" >&2; exit 2 ;;
  esac
done
selected() { [[ ",$only," == *",$1,"* ]]; }
if [ -z "$batch_sizes" ]; then
  if [ "$quick" -eq 1 ]; then batch_sizes=1,64; else batch_sizes=1,8,32,64,128; fi
fi
if [ -z "$static_batch_sizes" ]; then
  if [ "$quick" -eq 1 ]; then static_batch_sizes=1; else static_batch_sizes=1,64; fi
fi
quick_flag=()
if [ "$quick" -eq 1 ]; then quick_flag=(--quick); fi

gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
gpu_name=${gpu_name:-unknown GPU}
gpu_slug=$(echo "$gpu_name" | tr '[:upper:]' '[:lower:]' | sed -e 's/\bnvidia\b//g' -e 's/[^a-z0-9]\{1,\}/-/g' -e 's/^-//' -e 's/-$//')
date=$(date -u +%Y-%m-%d)
out=${out:-benchmarks/results/raw/$date-$gpu_slug}
mkdir -p "$out"

# meta.json: merged with what an earlier (partial) run wrote, so that runs of subsets add up.
python3 - "$out/meta.json" "$gpu_name" "$gpu_slug" "$date" <<'EOF'
import json, os, subprocess, sys, datetime
path, gpu_name, gpu_slug, date = sys.argv[1:5]
def run(command):
    try:
        return subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60).stdout.strip()
    except Exception:
        return ""
meta = {}
if os.path.exists(path):
    with open(path) as f:
        meta = json.load(f)
meta.update({
    "gpu_name": gpu_name, "gpu_slug": gpu_slug, "date": date,
    "started_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "driver_version": run("nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1"),
    "cuda_driver_api": run("nvidia-smi | sed -n 's/.*CUDA Version: *\\([0-9.]*\\).*/\\1/p' | head -1"),
    "nvcc_version": run("nvcc --version 2>/dev/null | sed -n 's/.*release \\([0-9.]*\\).*/\\1/p'"),
})
versions = run("python3 -c 'import torch; print(torch.__version__); import transformers; print(transformers.__version__)' 2>/dev/null").split()
meta.update({
    "torch_version": versions[0] if len(versions) > 0 else "",
    "transformers_version": versions[1] if len(versions) > 1 else "",
    "commit": run("git rev-parse --short HEAD") + ("" if run("git status --porcelain --untracked-files=no") == "" else " (with local changes)"),
    "nvidia_smi": run("nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,power.limit --format=csv"),
})
meta.setdefault("commands", {})
with open(path, "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")
EOF
record_command() {  # name, command...
  python3 - "$out/meta.json" "$@" <<'EOF'
import json, shlex, sys
path, name, *command = sys.argv[1:]
with open(path) as f:
    meta = json.load(f)
meta.setdefault("commands", {})[name] = " ".join(shlex.quote(part) for part in command)
with open(path, "w") as f:
    json.dump(meta, f, indent=1)
    f.write("\n")
EOF
}

total_steps=0
for name in ceilings attention sdpa model swap schedule hf; do
  if selected "$name"; then total_steps=$((total_steps + 1)); fi
done
start_seconds=$SECONDS
step_number=0
failures=()
skipped=()
step() {
  step_number=$((step_number + 1))
  echo
  echo "--- bench [$step_number/$total_steps, +$((SECONDS - start_seconds))s] $*"
}
# Runs a benchmark: name, native|python, command... Records it in meta.json; a failure is noted and
# the next benchmark still runs.
bench() {
  local name=$1 kind=$2
  shift 2
  local limit=$step_timeout
  if [ "$deadline" != 0 ]; then
    local left=$((deadline - $(date +%s)))
    if [ "$left" -lt 15 ]; then
      echo "run_all: $name skipped: the deadline is $left s away" >&2
      skipped+=("$name (deadline)")
      return 0
    fi
    if [ "$limit" = 0 ] || [ "$left" -lt "$limit" ]; then limit=$left; fi
  fi
  record_command "$name" "$@"
  local wrapper=()
  if [ "$limit" != 0 ]; then wrapper=(timeout -k 10 "$limit"); fi
  local status=0
  if [ "$kind" = native ]; then
    LD_LIBRARY_PATH="${SERVELAB_LD_LIBRARY_PATH:+$SERVELAB_LD_LIBRARY_PATH:}${LD_LIBRARY_PATH:-}" \
      "${wrapper[@]}" "$@" || status=$?
  else
    "${wrapper[@]}" "$@" || status=$?
  fi
  if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    failures+=("$name (killed after $limit s: time limit)")
    echo "run_all: $name was stopped by the time limit ($limit s); its JSON keeps what it finished" >&2
  elif [ "$status" -ne 0 ]; then
    failures+=("$name (exit $status)")
    echo "run_all: $name failed with exit status $status" >&2
  fi
}
binary() {  # the benchmark binary: top of the build tree, or its benchmarks/ folder
  for candidate in "$build/$1" "$build/benchmarks/$1"; do
    if [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}
missing_binary() {
  echo "run_all: warning: $1 is not built in $build; skipping $2" >&2
  skipped+=("$2 ($1 missing)")
}

echo "run_all: $gpu_name -> $out (${only})"

if selected ceilings; then
  step "ceilings: copy/read bandwidth, bf16 GEMM"
  if exe=$(binary servelab_bench_ceilings); then
    bench ceilings native "$exe" --json "$out/ceilings.json" "${quick_flag[@]}"
  else
    missing_binary servelab_bench_ceilings ceilings
  fi
fi

if selected attention; then
  step "attention: PagedAttention decode v1/v2"
  if exe=$(binary servelab_bench_attention); then
    bench attention native "$exe" --json "$out/attention.json" "${quick_flag[@]}"
  else
    missing_binary servelab_bench_attention attention
  fi
fi

if selected sdpa; then
  step "sdpa: PyTorch scaled_dot_product_attention on the same shapes"
  bench sdpa python python3 benchmarks/sdpa_bench.py --json "$out/sdpa.json" "${quick_flag[@]}"
fi

if selected model; then
  step "model: servelab decode ($batch_sizes) and prefill (2048 tokens)"
  if exe=$(binary servelab_bench_model); then
    bench model-decode native "$exe" decode --batch-sizes "$batch_sizes" --prompt 128 --new-tokens 256 \
      --json "$out/model_decode.json"
    bench model-prefill native "$exe" prefill --tokens 2048 --json "$out/model_prefill.json"
  else
    missing_binary servelab_bench_model model
  fi
fi

if selected swap; then
  step "swap: KV block swaps GPU <-> pinned host (block sizes 8-64) vs the host link"
  if exe=$(binary servelab_bench_swap); then
    bench swap native "$exe" --json "$out/swap.json" "${quick_flag[@]}"
  else
    missing_binary servelab_bench_swap swap
  fi
  if exe=$(binary servelab_bench_model); then
    bench swap-during-decode native "$exe" swapstep --batch-sizes 64 --prompt 128 --swap-blocks 128 \
      --json "$out/model_swapstep.json"
  else
    missing_binary servelab_bench_model swap
  fi
fi

if selected schedule; then
  step "schedule: the continuous-batching scheduler's CPU time per step against the forward (64, 256)"
  if exe=$(binary servelab_bench_model); then
    bench model-schedule native "$exe" schedule --batch-sizes 64,256 --prompt 128 --new-tokens 64 \
      --json "$out/model_schedule.json"
  else
    missing_binary servelab_bench_model schedule
  fi
fi

if selected hf; then
  if [ "$deadline" != 0 ] && [ "$hf_time_limit" = 0 ]; then
    # A static-cache run (compile included) takes 2-3 minutes: none starts in the last 200 s.
    hf_time_limit=$(( deadline - $(date +%s) - 200 ))
    if [ "$hf_time_limit" -lt 1 ]; then hf_time_limit=1; fi
  fi
  step "hf: transformers LlamaForCausalLM eager ($batch_sizes) and static cache ($static_batch_sizes)"
  bench hf python python3 benchmarks/hf_decode.py --json "$out/hf_decode.json" \
    --batch-sizes "$batch_sizes" --static-batch-sizes "$static_batch_sizes" --time-limit "$hf_time_limit" \
    --merge
fi

echo
echo "run_all: done in $((SECONDS - start_seconds)) s; raw JSON in $out"
if [ ${#skipped[@]} -gt 0 ]; then echo "run_all: skipped: ${skipped[*]}"; fi
if [ ${#failures[@]} -gt 0 ]; then
  echo "run_all: FAILED: ${failures[*]}"
  exit 1
fi
