#!/usr/bin/env bash
# The one command for the GPU machine: builds servelab with CUDA, runs the GPU tests, then every
# other test, then the benchmarks and their report, and packs logs and results into $OUT.
#
# The GPU machine (Ubuntu 24.04 with the CUDA toolkit, no internet, no apt) lacks our Debian build
# dependencies. scripts/fetch_gpu_deps.sh downloads them here into .carry/debs; on the device this
# script unpacks them with `dpkg -x` into a private prefix (never into /) and points CMake,
# pkg-config and the dynamic linker at it. Where .carry/debs is absent (a Debian machine with the
# packages installed), the system's packages are used.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/gpu_check.sh [options] [-- benchmark options]

Run from the repository root on the GPU machine (with .carry carried). Steps: unpack .carry/debs,
configure and build build-gpu (Release, CUDA on), ctest -L gpu, the other tests, the benchmarks
(benchmarks/run_all.sh), the report (benchmarks/report.py). Logs and results go to $OUT if set.

  --tests-only     build and test; no benchmarks
  --bench-only     build and benchmark; no tests
  --no-bench       same as --tests-only
  --build-only     unpack, configure and build; nothing else
  --quick          benchmarks with fewer batch sizes and contexts
  --target T       build only CMake target T (with --build-only: e.g. servelab)
  --build-dir DIR  build folder (default build-gpu)
  --deps-dir DIR   where .carry/debs is unpacked (default /tmp/servelab-deps)
  --time-budget S  finish within S seconds (default 570, under the device's 600 s per command;
                   0: no limit): steps are cut at the budget, keeping 45 s to report and pack
  -h, --help       this message
Anything after `--` goes to benchmarks/run_all.sh, e.g. `-- --only hf --static-batch-sizes 1`.
Extra CMake arguments: SERVELAB_CMAKE_ARGS="-D..." in the environment.
Exit status: 0 when every step that ran passed; 1 otherwise (the summary names the failures).
EOF
}

cd "$(dirname "$0")/.."
repo_root=$(pwd)
run_tests=1
run_bench=1
quick=0
build_dir=build-gpu
build_target=()
deps_dir=/tmp/servelab-deps
time_budget=570
bench_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --tests-only|--no-bench) run_bench=0; shift ;;
    --bench-only) run_tests=0; shift ;;
    --build-only) run_tests=0; run_bench=0; shift ;;
    --quick) quick=1; shift ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --target) build_target=(--target "$2"); shift 2 ;;
    --deps-dir) deps_dir=$2; shift 2 ;;
    --time-budget) time_budget=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; bench_args=("$@"); break ;;
    *) echo "gpu_check: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
if [ "$quick" -eq 1 ]; then bench_args=(--quick "${bench_args[@]}"); fi

jobs=$(nproc)
case "$build_dir" in /*) build_abs=$build_dir ;; *) build_abs="$repo_root/$build_dir" ;; esac
log_dir="$build_abs/gpu-check-logs"
raw_dir="$build_dir/bench-raw"  # relative where build_dir is, so the report shows repo-relative commands
start_seconds=$SECONDS
deadline=0  # seconds since 1970 by which every step must have ended (0: none)
if [ "$time_budget" != 0 ]; then deadline=$(( $(date +%s) + time_budget - 45 )); fi
failures=()
summary=()

total_steps=3  # deps, configure, build
if [ "$run_tests" -eq 1 ]; then total_steps=$((total_steps + 2)); fi
if [ "$run_bench" -eq 1 ]; then total_steps=$((total_steps + 2)); fi
step_number=0
step() {
  step_number=$((step_number + 1))
  echo
  echo "=== [step $step_number/$total_steps, +$((SECONDS - start_seconds))s] $*"
}
note() { summary+=("$*"); echo "gpu_check: $*"; }
# Runs a command with the unpacked libraries (if any) first on LD_LIBRARY_PATH, stopped at the
# deadline (exit status 124 then).
with_deps() {
  local limit=()
  local left
  left=$(budget_left)
  if [ "$left" -lt 1 ]; then left=1; fi  # timeout 0 would mean no limit
  if [ "$deadline" != 0 ]; then limit=(timeout -k 10 "$left"); fi
  LD_LIBRARY_PATH="${dep_library_path:+$dep_library_path${LD_LIBRARY_PATH:+:}}${LD_LIBRARY_PATH:-}" \
    "${limit[@]}" "$@"
}
budget_left() {
  if [ "$deadline" = 0 ]; then echo 1000000; else echo $(( deadline - $(date +%s) )); fi
}
# True (and noted) when too little of the time budget is left to start a step.
out_of_time() {
  if [ "$(budget_left)" -lt 30 ]; then
    failures+=("$1 (not started: time budget)")
    note "$1: not started, $(budget_left) s left of the time budget"
    return 0
  fi
  return 1
}

# ---- outputs ---------------------------------------------------------------------------------
# The device returns at most 8 files from $OUT, so everything is packed into four:
# summary.txt, logs.tar.gz, results.tar.gz (report, plots, raw JSON, as paths of the repo) and
# report.md (the report alone, to read at once). Called after every step, so that a run cut short
# by the time limit still returns what it had.
write_summary() {
  mkdir -p "$log_dir"
  {
    echo "servelab gpu_check: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), $((SECONDS - start_seconds)) s"
    echo "device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1 || echo unknown)"
    echo "commit: $(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo_root" diff --quiet 2>/dev/null || echo ' (with local changes)')"
    for line in "${summary[@]}"; do echo "  $line"; done
    if [ ${#failures[@]} -gt 0 ]; then echo "FAILED: ${failures[*]}"; else echo "all steps passed"; fi
  } > "$log_dir/summary.txt"
}
save_outputs() {
  write_summary
  [ -n "${OUT:-}" ] || return 0
  mkdir -p "$OUT"
  cp "$log_dir/summary.txt" "$OUT/summary.txt"
  tar -czf "$OUT/logs.tar.gz" -C "$log_dir" . 2>/dev/null || true
  local results=()
  if [ -n "${report_stem:-}" ]; then
    for f in "$repo_root/benchmarks/results/$report_stem".md "$repo_root/benchmarks/results/$report_stem"-*.png; do
      [ -e "$f" ] && results+=("${f#"$repo_root"/}")
    done
    [ -d "$repo_root/benchmarks/results/raw/$report_stem" ] && results+=("benchmarks/results/raw/$report_stem")
    [ -e "$repo_root/benchmarks/results/$report_stem.md" ] && cp "$repo_root/benchmarks/results/$report_stem.md" "$OUT/report.md"
  fi
  if [ ${#results[@]} -gt 0 ]; then
    tar -czf "$OUT/results.tar.gz" -C "$repo_root" "${results[@]}"
  elif [ -d "$build_abs/bench-raw" ]; then
    tar -czf "$OUT/results.tar.gz" -C "$build_abs" bench-raw
  fi
}
finish() {
  save_outputs
  echo
  echo "=== gpu_check summary (+$((SECONDS - start_seconds))s)"
  cat "$log_dir/summary.txt"
  if [ ${#failures[@]} -gt 0 ]; then exit 1; fi
  exit 0
}
fatal() { failures+=("$1"); note "$1 FAILED${2:+: $2}"; finish; }

mkdir -p "$log_dir"
rm -f "$log_dir"/*.log  # an earlier call's logs would be packed as if they were this one's
echo "gpu_check: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1 || echo 'nvidia-smi: no GPU seen')"

# ---- 1. dependencies ------------------------------------------------------------------------
step "dependencies (.carry/debs -> $deps_dir)"
cmake_dep_args=()
dep_library_path=""
if compgen -G ".carry/debs/*.deb" >/dev/null; then
  stamp=$(cd .carry/debs && sha256sum ./*.deb | sha256sum | cut -d' ' -f1)
  if [ -f "$deps_dir/.servelab-stamp" ] && [ "$(cat "$deps_dir/.servelab-stamp")" = "$stamp" ]; then
    note "deps: $deps_dir is already unpacked from these .deb files"
  else
    rm -rf "$deps_dir"
    mkdir -p "$deps_dir"
    for deb in .carry/debs/*.deb; do dpkg-deb -x "$deb" "$deps_dir"; done
    multiarch=$(basename "$(dirname "$(ls -d "$deps_dir"/usr/lib/*/openblas-pthread | head -1)")")
    lib="$deps_dir/usr/lib/$multiarch"
    include="$deps_dir/usr/include/$multiarch"
    # What update-alternatives would have made for OpenBLAS (dpkg -x runs no maintainer scripts).
    ln -sfn openblas-pthread/libopenblas.so "$lib/libopenblas.so"
    ln -sfn openblas-pthread/libopenblas.so.0 "$lib/libopenblas.so.0"
    ln -sfn openblas-pthread/libblas.so "$lib/libblas.so"
    ln -sfn openblas-pthread/libblas.so.3 "$lib/libblas.so.3"
    ln -sfn openblas-pthread/liblapack.so "$lib/liblapack.so"
    ln -sfn openblas-pthread/liblapack.so.3 "$lib/liblapack.so.3"
    ln -sfn openblas-pthread/cblas.h "$include/cblas.h"
    ln -sfn openblas-pthread/cblas.h "$include/cblas-openblas.h"
    ln -sfn openblas-pthread/f77blas.h "$include/f77blas.h"
    ln -sfn openblas-pthread/openblas_config.h "$include/openblas_config.h"
    mkdir -p "$lib/pkgconfig" "$lib/cmake/openblas"
    ln -sfn ../openblas-pthread/pkgconfig/openblas.pc "$lib/pkgconfig/openblas.pc"
    ln -sfn ../openblas-pthread/pkgconfig/blas-openblas.pc "$lib/pkgconfig/blas.pc"
    ln -sfn ../openblas-pthread/pkgconfig/lapack-openblas.pc "$lib/pkgconfig/lapack.pc"
    for f in OpenBLASConfig.cmake OpenBLASConfigVersion.cmake; do
      ln -sfn "../../openblas-pthread/cmake/openblas/$f" "$lib/cmake/openblas/$f"
    done
    # Absolute links (e.g. libz.so -> /lib/x86_64-linux-gnu/libz.so.1.2.13) point into the prefix.
    while IFS= read -r link; do
      target=$(readlink "$link")
      if [ -e "$deps_dir$target" ]; then ln -sfn "$deps_dir$target" "$link"; fi
    done < <(find "$deps_dir" -type l -lname '/*')
    # Runtime libraries that only back up the system's: where the system has the soname, the
    # carried copy is replaced by a link to the system's, so one process never loads two builds.
    for soname in libgfortran.so.5 libquadmath.so.0 libssl.so.3 libcrypto.so.3 libz.so.1 \
                  libbrotlicommon.so.1 libbrotlidec.so.1 libbrotlienc.so.1; do
      system_copy=$( { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true; } \
                     | awk -v name="$soname" '$1 == name && /x86-64/ && !found { print $NF; found = 1 }')
      for carried in "$lib/$soname" "$deps_dir/lib/$multiarch/$soname"; do
        if [ -n "$system_copy" ] && { [ -e "$carried" ] || [ -L "$carried" ]; }; then
          rm -f "$(readlink -f "$carried")" "$carried"
          ln -s "$system_copy" "$carried"
        fi
      done
      echo "  $soname: ${system_copy:-carried copy (the system has none)}"
    done
    echo "$stamp" > "$deps_dir/.servelab-stamp"
    note "deps: unpacked $(ls .carry/debs/*.deb | wc -l) .deb files into $deps_dir"
  fi
  multiarch=$(basename "$(dirname "$(ls -d "$deps_dir"/usr/lib/*/openblas-pthread | head -1)")")
  lib="$deps_dir/usr/lib/$multiarch"
  # CMake finds the config packages (xtl, xtensor, xtensor-blas, nlohmann_json, GTest) under the
  # prefix; pkg-config (openblas, sentencepiece, cpp-httplib) sees only the prefix's .pc files,
  # whose /usr paths the sysroot maps into the prefix.
  cmake_dep_args=(-DCMAKE_PREFIX_PATH="$deps_dir/usr" -DBLA_VENDOR=OpenBLAS)
  export PKG_CONFIG_LIBDIR="$lib/pkgconfig:$deps_dir/usr/share/pkgconfig"
  export PKG_CONFIG_SYSROOT_DIR="$deps_dir"
  # For the linker (libopenblas.so needs libgfortran.so.5...) and for running what was built; not
  # for Python (PyTorch brings its own libraries).
  dep_library_path="$lib:$lib/openblas-pthread:$deps_dir/lib/$multiarch"
  export SERVELAB_LD_LIBRARY_PATH="$dep_library_path"
else
  note "deps: no .carry/debs; using the system's packages"
fi
save_outputs

# ---- 2. configure ----------------------------------------------------------------------------
step "configure $build_dir (Release, CUDA on)"
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
generator_args=()
if [ ! -f "$build_dir/CMakeCache.txt" ] && command -v ninja >/dev/null; then generator_args=(-G Ninja); fi
# CMAKE_POLICY_VERSION_MINIMUM: CMake 4 refuses package files that ask for policies older than
# 3.5; Debian's are fine today, this keeps them working if one is not.
# shellcheck disable=SC2086
if with_deps cmake -S . -B "$build_dir" "${generator_args[@]}" -DCMAKE_BUILD_TYPE=Release -DSERVELAB_CUDA=ON \
     -DCMAKE_POLICY_VERSION_MINIMUM=3.5 "${cmake_dep_args[@]}" ${SERVELAB_CMAKE_ARGS:-} \
     > "$log_dir/configure.log" 2>&1; then
  note "configure: ok ($(grep -m1 'servelab: CUDA targets' "$log_dir/configure.log" | sed 's/^-- //'))"
else
  tail -40 "$log_dir/configure.log"
  fatal "configure" "see configure.log"
fi
save_outputs

# ---- 3. build --------------------------------------------------------------------------------
step "build $build_dir (-j$jobs)"
build_start=$SECONDS
status=0
with_deps cmake --build "$build_dir" "${build_target[@]}" -j "$jobs" > "$log_dir/build.log" 2>&1 || status=$?
if [ "$status" -eq 0 ]; then
  warnings=$(grep -c -i 'warning' "$log_dir/build.log" || true)
  note "build: ok in $((SECONDS - build_start)) s ($warnings lines mention warnings; build.log)"
elif [ "$status" -eq 124 ]; then
  fatal "build" "stopped by the time budget after $((SECONDS - build_start)) s (build.log); run again: it resumes"
else
  grep -n -B2 -A12 -m5 -E 'error|Error' "$log_dir/build.log" | tail -80
  fatal "build" "see build.log"
fi
save_outputs

# ---- 4-5. tests -------------------------------------------------------------------------------
# Counts from a ctest log: "passed failed skipped total".
ctest_counts() {
  local log=$1 total failed skipped
  # CMake 3.x: "100% tests passed, 0 tests failed out of 341"; CMake 4 drops ", 0 tests failed"
  # when none failed: "100% tests passed out of 644".
  total=$(sed -n 's/.*tests passed.* out of \([0-9]*\).*/\1/p' "$log" | tail -1)
  failed=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of.*/\1/p' "$log" | tail -1)
  skipped=$(grep -c '(Skipped)\|Not Run (Disabled)' "$log" || true)
  total=${total:-0}; failed=${failed:-0}
  echo "$((total - failed - skipped)) $failed $skipped $total"
}
if [ "$run_tests" -eq 1 ] && ! out_of_time "gpu tests"; then
  step "GPU tests (ctest -L gpu)"
  set +e
  with_deps ctest --test-dir "$build_dir" -L gpu -j 4 --output-on-failure --no-tests=error --timeout 600 \
    2>&1 | tee "$log_dir/ctest-gpu.log"
  status=${PIPESTATUS[0]}
  set -e
  read -r passed failed skipped total < <(ctest_counts "$log_dir/ctest-gpu.log")
  note "gpu tests: $passed passed, $failed failed, $skipped skipped (of $total)"
  if [ "$total" -eq 0 ]; then
    failures+=("gpu tests (none found: were the CUDA targets built?)")
  elif [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then
    failures+=("gpu tests")
  fi
  # On the GPU machine a skipped GPU test means the test saw no GPU: that is a failure here.
  if [ "$skipped" -ne 0 ]; then failures+=("gpu tests skipped (no GPU seen?)"); fi
  save_outputs
fi
if [ "$run_tests" -eq 1 ] && ! out_of_time "other tests"; then
  step "all other tests (ctest -LE gpu)"
  set +e
  with_deps ctest --test-dir "$build_dir" -LE gpu -j "$jobs" --output-on-failure --timeout 600 \
    > "$log_dir/ctest-other.log" 2>&1
  status=$?
  set -e
  grep -E 'tests passed|\*\*\*Failed|Failed  |Timeout|Exception' "$log_dir/ctest-other.log" | tail -40 || true
  read -r passed failed skipped total < <(ctest_counts "$log_dir/ctest-other.log")
  note "other tests: $passed passed, $failed failed, $skipped skipped (of $total)"
  if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then failures+=("other tests"); fi
  cp "$build_dir/Testing/Temporary/LastTest.log" "$log_dir/LastTest-other.log" 2>/dev/null || true
  save_outputs
fi

# ---- 6-7. benchmarks and report ----------------------------------------------------------------
if [ "$run_bench" -eq 1 ] && ! out_of_time "benchmarks"; then
  step "benchmarks (benchmarks/run_all.sh ${bench_args[*]})"
  deadline_args=()
  if [ "$deadline" != 0 ]; then deadline_args=(--deadline "$deadline"); fi
  set +e
  benchmarks/run_all.sh --build "$build_dir" --out "$raw_dir" "${deadline_args[@]}" "${bench_args[@]}" \
    2>&1 | tee "$log_dir/bench.log"
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -eq 0 ]; then note "benchmarks: ok"; else failures+=("benchmarks"); note "benchmarks: some failed (bench.log)"; fi
  while IFS= read -r line; do note "  $line"; done < <(grep -E '^run_all: (skipped|FAILED):' "$log_dir/bench.log" || true)
  save_outputs
fi
if [ "$run_bench" -eq 1 ] && [ -d "$build_abs/bench-raw" ]; then
  step "report (benchmarks/report.py)"
  set +e
  python3 benchmarks/report.py --raw "$raw_dir" --out benchmarks/results 2>&1 | tee "$log_dir/report.log"
  status=${PIPESTATUS[0]}
  set -e
  report_stem=$(sed -n 's/^report: stem //p' "$log_dir/report.log" | tail -1)
  if [ "$status" -eq 0 ] && [ -n "$report_stem" ]; then
    note "report: benchmarks/results/$report_stem.md"
    grep -E '^\| .*(PASS|MISS)' "benchmarks/results/$report_stem.md" | sed 's/^/    /' || true
    while IFS= read -r line; do summary+=("  $line"); done < <(grep -E '^\| .*(PASS|MISS)' "benchmarks/results/$report_stem.md" || true)
  else
    failures+=("report")
    note "report: failed (report.log)"
  fi
fi
finish
