#!/usr/bin/env bash
# Everything that can run without a GPU, in order:
#   1. install what is missing (scripts/setup.sh)
#   2. build (CUDA targets too when nvcc is present: they must compile even where they cannot run)
#   3. unit, e2e and lab tests (ctest); gpu tests show as skipped here
#   4. the unit tests again under AddressSanitizer + UBSan
#   5. the labs: the lab tool's self-test, and each lab's tests fail on the student tree and pass here
#   6. the docs: Doxygen (warnings shown) and `mkdocs build --strict`
# Exit status is non-zero if any step fails. Build folders: build/ and build-sanitize/.
set -uo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
failed=()
# Each step's heading gives the minutes elapsed so far (CI has 30 minutes on 2 cores).
step() { echo; echo "=================== $* (at $((SECONDS / 60)) min $((SECONDS % 60)) s)"; }

step "1/6 setup"
bash scripts/setup.sh || exit 1

step "2/6 build (build/)"
# For time (CI has 30 minutes on 2 cores): the GPU benchmarks are left out (scripts/gpu_check.sh
# builds and runs them on a GPU), and debug info is line tables only (-g1: enough for backtraces,
# a third less compile time than -g).
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSERVELAB_GPU_BENCHMARKS=OFF \
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" ${SERVELAB_CMAKE_ARGS:-} >/dev/null || exit 1
cmake --build build -j "$JOBS" || exit 1

step "3/6 tests: unit, e2e, labs (gpu tests skip without a GPU)"
ctest --test-dir build -j "$JOBS" --output-on-failure --timeout 600 | tee build/ctest.log || failed+=("ctest")

step "4/6 sanitizers (build-sanitize/): unit tests under ASan + UBSan"
# For time, this tree builds only the unit suites (target servelab_unit_tests) at -O1 with line
# tables (half the compile time of -O2 -g under ASan). The unit suites include the HTTP layer on
# loopback with a fake engine and both engines in-process with the embedded model; the end-to-end
# programs (label e2e: the servers as processes, minutes of model steps) run in step 3 only.
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSERVELAB_SANITIZE=ON -DSERVELAB_CUDA=OFF \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1" >/dev/null \
  && cmake --build build-sanitize -j "$JOBS" --target servelab_unit_tests \
  && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --test-dir build-sanitize -j "$JOBS" -L unit --output-on-failure --timeout 900 \
  || failed+=("sanitizers")

step "5/6 labs"
bash labs/tools/selftest/test_make_student_tree.sh || failed+=("lab tool self-test")
# The student tree is a Debug build; line tables only, for time.
SERVELAB_LAB_CMAKE_ARGS="-DCMAKE_CXX_FLAGS_DEBUG=-g1 ${SERVELAB_LAB_CMAKE_ARGS:-}" \
  bash labs/tools/check_labs.sh build || failed+=("lab check")

step "6/6 docs"
rm -rf docs/api
mkdir -p build
if doxygen Doxyfile 2> build/doxygen-warnings.log; then
  echo "doxygen: $(grep -c warning build/doxygen-warnings.log || true) warning(s) (build/doxygen-warnings.log)"
  cat build/doxygen-warnings.log
else
  cat build/doxygen-warnings.log; failed+=("doxygen")
fi
mkdocs build --strict --quiet || failed+=("mkdocs")

# One closing line with the main test run's counts (skipped = GPU tests on a machine without one).
# (CMake 4 writes "100% tests passed out of N" when none failed, CMake 3 adds ", 0 tests failed".)
total=$(sed -n 's/.*tests passed.* out of \([0-9]*\).*/\1/p' build/ctest.log | tail -1)
failing=$(sed -n 's/.*tests passed, \([0-9]*\) tests failed out of.*/\1/p' build/ctest.log | tail -1)
skipped=$(grep -c '(Skipped)' build/ctest.log || true)
echo
echo "test.sh: $((SECONDS / 60)) min $((SECONDS % 60)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "test.sh: FAILED: ${failed[*]}"
  echo "tests: $(( ${total:-0} - ${failing:-0} - skipped )) passed, ${failing:-0} failed, ${skipped} skipped"
  exit 1
fi
echo "test.sh: all steps passed (sanitizers, labs and docs included)"
echo "tests: $(( ${total:-0} - ${failing:-0} - skipped )) passed, ${failing:-0} failed, ${skipped} skipped"
