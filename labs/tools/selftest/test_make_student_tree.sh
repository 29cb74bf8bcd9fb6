#!/usr/bin/env bash
# Self-test of labs/tools/make_student_tree.sh: builds small throw-away repositories with good and
# malformed lab regions, runs the tool on them and checks what it writes and what it refuses.
# Prints "N passed, M failed" as its last line; exits non-zero if any check failed.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
tool="$here/../make_student_tree.sh"
repo_root=$(cd "$here/../../.." && pwd -P)
error_header="$repo_root/code/common/error.h"

passed=0
failed=0
work=$(mktemp -d "${TMPDIR:-/tmp}/test_make_student_tree.XXXXXX")
trap 'rm -rf "$work"' EXIT

pass() { passed=$((passed + 1)); echo "PASS $1"; }
fail() {
  failed=$((failed + 1))
  echo "FAIL $1"
  if [[ -n "${2:-}" ]]; then printf '%s\n' "$2" | sed 's/^/     | /'; fi
}
# expect NAME COMMAND...: the command must succeed.
expect() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
# file_has FILE TEXT / file_lacks FILE TEXT: fixed-string search.
file_has() { grep -qF -- "$2" "$1"; }
file_lacks() { ! grep -qF -- "$2" "$1"; }
# line_of FILE TEXT: the number of the first line holding TEXT (empty if none).
line_of() { grep -nF -- "$2" "$1" | head -n 1 | cut -d: -f1; }

# new_repo DIR: an empty git work tree with a .gitignore like the project's.
new_repo() {
  mkdir -p "$1"
  git -C "$1" init -q
  printf '/build*/\n*.o\n' >"$1/.gitignore"
}

# --- a good tree -------------------------------------------------------------------------------
good="$work/good"
new_repo "$good"
mkdir -p "$good/code/common" "$good/code/model" "$good/code/sampling" "$good/build" "$good/docs" \
  "$good/kernels"
cp "$error_header" "$good/code/common/error.h"

cat >"$good/code/model/rms_norm.cpp" <<'EOF'
// RMS norm, the reference.
#include "model/rms_norm.h"

#include <cmath>
#include <vector>

namespace servelab {

float sum_of_squares(const std::vector<float>& values) {
  float total = 0.0f;
  // BEGIN LAB(lab01-rms-norm)
  for (float value : values) total += value * value;
  // END LAB
  return total;
}

void rms_norm(std::vector<float>& values, float epsilon) {
  if (values.empty()) return;
    // BEGIN LAB(lab01-rms-norm)
    const float scale = 1.0f / std::sqrt(sum_of_squares(values) / values.size() + epsilon);
    for (float& value : values) value *= scale;
    // END LAB
}

}  // namespace servelab
EOF
cat >"$good/code/model/rms_norm.h" <<'EOF'
// RMS norm.
#pragma once
#include <vector>
namespace servelab {
float sum_of_squares(const std::vector<float>& values);
void rms_norm(std::vector<float>& values, float epsilon);
}  // namespace servelab
EOF
# Already includes error.h: the tool must not add it twice.
cat >"$good/code/model/rope.cpp" <<'EOF'
#include "common/error.h"
#include <cmath>

namespace servelab {
double rotate(double angle) {
  // BEGIN LAB(lab01-rope)
  return std::cos(angle);
  // END LAB
}
}  // namespace servelab
EOF
# A header with a guard and a conditional include: the include goes after the last include at
# the guard's depth, not inside the #ifdef.
cat >"$good/code/sampling/top_p.h" <<'EOF'
#ifndef SERVELAB_TOP_P_H
#define SERVELAB_TOP_P_H
#include <vector>
#ifdef SERVELAB_EXTRA
#include <map>
#endif
namespace servelab {
inline int top_p_count(const std::vector<float>& p) {
  // BEGIN LAB(lab02-top-p)
  return static_cast<int>(p.size());
  // END LAB
}
}  // namespace servelab
#endif
EOF
# No #include at all, but #pragma once: the include goes right after it.
cat >"$good/code/sampling/penalty.cuh" <<'EOF'
// Repetition penalty.
#pragma once
namespace servelab {
inline float penalise(float logit) {
  // BEGIN LAB(lab02-repetition-penalty)
  return logit / 2.0f;
  // END LAB
}
}  // namespace servelab
EOF
# One part with a device region (the kernel body: its stub must not throw) and a host region (the
# launcher). The #define lets g++ compile the file as C++ below.
cat >"$good/kernels/scale.cu" <<'EOF'
// Scales a vector on the GPU.
#ifndef __CUDACC__
#define __global__
#endif
#include <vector>

namespace servelab {
__global__ void scale_kernel(float* values, int count, float factor) {
  for (int i = 0; i < count; ++i) {
    // BEGIN LAB(lab04-scale, device)
    values[i] *= factor;
    // END LAB
  }
}

void scale(std::vector<float>& values, float factor) {
  // BEGIN LAB(lab04-scale)
  scale_kernel(values.data(), static_cast<int>(values.size()), factor);
  // END LAB
}
}  // namespace servelab
EOF
# Device regions only (no space after the comma; END repeats the id and flag): no throw, and no
# error.h include, since nothing in the file needs it.
cat >"$good/kernels/reduce.cuh" <<'EOF'
// Sums on the GPU.
#pragma once
#ifndef __CUDACC__
#define __device__
#endif
#include <cstdint>
namespace servelab {
__device__ inline float sum_of(const float* values, int64_t count) {
  float total = 0.0f;
  // BEGIN LAB(lab05-reduce,device)
  for (int64_t i = 0; i < count; ++i) total += values[i];
  // END LAB(lab05-reduce, device)
  return total;
}
}  // namespace servelab
EOF
# Not a lab marker: documentation mentions, a non-source file, and an ignored build directory.
cat >"$good/code/model/notes.cpp" <<'EOF'
/// Lab regions look like // BEGIN LAB(labNN-part) ... // END LAB in a function body.
int notes() { return 1; }
EOF
printf '// BEGIN LAB(lab09-not-source)\nkeep me\n// END LAB\n' >"$good/docs/guide.md"
printf '// BEGIN LAB(lab09-build)\nint x;\n' >"$good/build/generated.cpp"
git -C "$good" add code/model/rms_norm.cpp code/model/rms_norm.h .gitignore
# Everything else stays untracked but not ignored, and must be copied too.

out="$work/out_good.txt"
student="$work/student"
if "$tool" "$good" "$student" >"$out" 2>&1; then pass "good tree: exit 0"; else fail "good tree: exit 0" "$(cat "$out")"; fi

stub_rms="$student/code/model/rms_norm.cpp"
expect "stub comment replaces the BEGIN marker" \
  file_has "$stub_rms" "  // BEGIN LAB(lab01-rms-norm): your code here. See labs/ for the handout."
expect "throw stub inserted with the region's indent" \
  file_has "$stub_rms" '  throw ::servelab::LabNotImplemented("lab01-rms-norm");'
expect "deeper-indented region keeps its indent" \
  file_has "$stub_rms" '    throw ::servelab::LabNotImplemented("lab01-rms-norm");'
expect "reference lines removed" file_lacks "$stub_rms" "total += value * value"
expect "second region's reference lines removed" file_lacks "$stub_rms" "value *= scale"
expect "END marker kept" test "$(grep -c '// END LAB' "$stub_rms")" -eq 2
expect "code outside regions kept" file_has "$stub_rms" "  return total;"
expect "include added" file_has "$stub_rms" '#include "common/error.h"'
expect "include added right after the last #include" \
  test "$(line_of "$stub_rms" '#include "common/error.h"')" -eq $(($(line_of "$stub_rms" '#include <vector>') + 1))
expect "header without regions untouched" cmp -s "$good/code/model/rms_norm.h" "$student/code/model/rms_norm.h"

expect "existing error.h include not duplicated" \
  test "$(grep -c 'common/error.h' "$student/code/model/rope.cpp")" -eq 1
expect "return inside region stubbed" \
  file_has "$student/code/model/rope.cpp" 'throw ::servelab::LabNotImplemented("lab01-rope");'

top_p="$student/code/sampling/top_p.h"
expect "include goes after the guard-level include, not inside #ifdef" \
  test "$(line_of "$top_p" '#include "common/error.h"')" -eq $(($(line_of "$top_p" '#include <vector>') + 1))
penalty="$student/code/sampling/penalty.cuh"
expect "include goes after #pragma once when there is no #include" \
  test "$(line_of "$penalty" '#include "common/error.h"')" -eq $(($(line_of "$penalty" '#pragma once') + 1))
expect ".cuh files are stubbed" file_has "$penalty" 'LabNotImplemented("lab02-repetition-penalty")'

scale="$student/kernels/scale.cu"
expect "device region: BEGIN line says your code here" \
  file_has "$scale" "    // BEGIN LAB(lab04-scale, device): your code here. See labs/ for the handout."
expect "device region: reference lines removed" file_lacks "$scale" "values[i] *= factor"
expect "device region: replaced by a comment, not a throw" \
  test "$(sed -n "$(($(line_of "$scale" 'lab04-scale, device') + 1))p" "$scale")" = \
  "    // Device code cannot throw, so this stub is empty: the part's tests fail until you write it."
expect "device region: END marker follows the comment" \
  test "$(sed -n "$(($(line_of "$scale" 'lab04-scale, device') + 2))p" "$scale")" = "    // END LAB"
expect "host region of the same part still throws" \
  test "$(grep -c 'LabNotImplemented("lab04-scale")' "$scale")" -eq 1
expect "host region of the same part: reference lines removed" file_lacks "$scale" "scale_kernel(values.data()"
expect "host region in a .cu file gets the include" file_has "$scale" '#include "common/error.h"'
reduce="$student/kernels/reduce.cuh"
expect "device-only file: no throw" file_lacks "$reduce" "LabNotImplemented"
expect "device-only file: no include added" file_lacks "$reduce" "common/error.h"
expect "device region without a space after the comma is stubbed" \
  file_has "$reduce" "  // BEGIN LAB(lab05-reduce, device): your code here."
expect "device-only file: code after the region kept" file_has "$reduce" "  return total;"
expect "device-only file: reference lines removed" file_lacks "$reduce" "total += values[i]"

expect "documentation mention of a marker left alone" cmp -s "$good/code/model/notes.cpp" "$student/code/model/notes.cpp"
expect "markers in non-source files left alone" cmp -s "$good/docs/guide.md" "$student/docs/guide.md"
expect "ignored build dir not copied" test ! -e "$student/build"
expect "untracked, not ignored files copied" test -f "$student/code/sampling/top_p.h"
expect ".git not copied" test ! -e "$student/.git"
expect ".lab_parts lists parts sorted and unique" \
  test "$(cat "$student/.lab_parts")" = "$(printf 'lab01-rms-norm\nlab01-rope\nlab02-repetition-penalty\nlab02-top-p\nlab04-scale\nlab05-reduce')"
expect "summary counts regions per part" grep -qE '^lab01-rms-norm +2 +0 +stubbed +code/model/rms_norm.cpp$' "$out"
expect "summary names the files" grep -qE '^lab02-top-p +1 +0 +stubbed +code/sampling/top_p.h$' "$out"
expect "summary counts device regions" grep -qE '^lab04-scale +2 +1 +stubbed +kernels/scale.cu$' "$out"
expect "source tree left unchanged" file_has "$good/code/model/rms_norm.cpp" "total += value * value"

if command -v g++ >/dev/null 2>&1; then
  compile_log="$work/compile.log"
  if g++ -std=c++17 -fsyntax-only -Wall -Wextra -I "$student/code" "$stub_rms" "$student/code/model/rope.cpp" \
    -x c++ "$top_p" -x c++ "$penalty" >"$compile_log" 2>&1; then
    pass "stubbed files compile"
  else
    fail "stubbed files compile" "$(cat "$compile_log")"
  fi
  # The .cu and .cuh files, as C++ (their __global__ / __device__ are defined away): the device
  # stubs leave valid function bodies behind, and the host stub's throw finds its include.
  if g++ -std=c++17 -fsyntax-only -Wall -Wextra -Wno-unused-parameter -I "$student/code" \
    -x c++ "$scale" -x c++ "$reduce" >"$compile_log" 2>&1; then
    pass "stubbed .cu/.cuh files compile as C++"
  else
    fail "stubbed .cu/.cuh files compile as C++" "$(cat "$compile_log")"
  fi
fi

# Running the tool again on the student tree changes nothing (the stubs are regions too).
again="$work/student_again"
if "$tool" "$student" "$again" >/dev/null 2>&1 && diff -r "$student" "$again" >/dev/null; then
  pass "stubbing a student tree again is a no-op"
else
  fail "stubbing a student tree again is a no-op"
fi

# --- refusals ----------------------------------------------------------------------------------
if "$tool" "$good" "$student" >"$out" 2>&1; then fail "non-empty DEST refused"; else
  expect "non-empty DEST refused" file_has "$out" "is not empty"
fi
mkdir "$work/empty_dest"
expect "empty existing DEST accepted" "$tool" "$good" "$work/empty_dest" >/dev/null 2>&1
expect "bad --lab value refused" bash -c "! '$tool' --lab lab1 '$good' '$work/never' 2>/dev/null && test ! -e '$work/never'"

# --- --lab filter ------------------------------------------------------------------------------
teacher="$work/teacher"
"$tool" --lab lab02 "$good" "$teacher" >"$out" 2>&1 || fail "--lab lab02: exit 0" "$(cat "$out")"
expect "--lab lab02 keeps lab01 reference code" cmp -s "$good/code/model/rms_norm.cpp" "$teacher/code/model/rms_norm.cpp"
expect "--lab lab02 stubs lab02" file_has "$teacher/code/sampling/top_p.h" 'LabNotImplemented("lab02-top-p")'
expect "--lab summary says kept / stubbed" grep -qE '^lab01-rope +1 +0 +kept ' "$out"
expect "--lab lab02 keeps device regions of other labs" cmp -s "$good/kernels/scale.cu" "$teacher/kernels/scale.cu"
device_only="$work/device_only"
"$tool" --lab lab04-scale "$good" "$device_only" >/dev/null 2>&1 || fail "--lab lab04-scale: exit 0"
expect "--lab PART stubs the part's device and host regions" \
  bash -c "grep -qF 'lab04-scale, device): your code here' '$device_only/kernels/scale.cu' &&
           grep -qF 'LabNotImplemented(\"lab04-scale\")' '$device_only/kernels/scale.cu'"
part_only="$work/part_only"
"$tool" --lab lab01-rope "$good" "$part_only" >/dev/null 2>&1 || fail "--lab lab01-rope: exit 0"
expect "--lab PART stubs only that part" file_has "$part_only/code/model/rope.cpp" 'LabNotImplemented("lab01-rope")'
expect "--lab PART keeps the lab's other parts" cmp -s "$good/code/model/rms_norm.cpp" "$part_only/code/model/rms_norm.cpp"

# --- --list ------------------------------------------------------------------------------------
expect "--list prints part, file, line, kind" \
  bash -c "'$tool' --list '$good' | grep -qxF \$'lab01-rms-norm\tcode/model/rms_norm.cpp\t11\thost'"
expect "--list marks device regions" \
  bash -c "'$tool' --list '$good' | grep -qxF \$'lab04-scale\tkernels/scale.cu\t10\tdevice'"
expect "--list lists a part's device and host regions" \
  test "$("$tool" --list "$good" | grep -c $'^lab04-scale\t')" -eq 2

# --- malformed regions: each in its own repo, each must fail with file:line and write nothing ----
# malformed NAME EXPECTED_LOCATION EXPECTED_TEXT: the fixture in $work/bad_NAME/code/bad.cpp is
# already written.
malformed() {
  local name=$1 location=$2 text=$3 repo="$work/bad_$1"
  local log="$work/bad_$1.log"
  if "$tool" "$repo" "$work/bad_$1_out" >"$log" 2>&1; then
    fail "malformed ($name): exit non-zero" "$(cat "$log")"
    return
  fi
  if grep -qF "$location" "$log" && grep -qF "$text" "$log"; then
    pass "malformed ($name): reports $location"
  else
    fail "malformed ($name): reports $location with '$text'" "$(cat "$log")"
  fi
  expect "malformed ($name): DEST not created" test ! -e "$work/bad_$1_out"
}
bad_file() { new_repo "$work/bad_$1"; mkdir -p "$work/bad_$1/code"; cat >"$work/bad_$1/code/bad.cpp"; }
bad_cuda_file() { new_repo "$work/bad_$1"; mkdir -p "$work/bad_$1/code"; cat >"$work/bad_$1/code/bad.cu"; }

bad_file unclosed <<'EOF'
void f() {
  // BEGIN LAB(lab01-rms-norm)
  int x = 0;
}
EOF
malformed unclosed "code/bad.cpp:2:" "no matching END LAB"

bad_file nested <<'EOF'
void f() {
  // BEGIN LAB(lab01-rms-norm)
  int x = 0;
  // BEGIN LAB(lab01-rope)
  // END LAB
  // END LAB
}
EOF
malformed nested "code/bad.cpp:4:" "nested BEGIN LAB"
expect "malformed (nested): the inner END does not count as a stray END" file_lacks "$work/bad_nested.log" "code/bad.cpp:6:"

bad_file stray_end <<'EOF'
void f() {
  int x = 0;
  // END LAB
}
EOF
malformed stray_end "code/bad.cpp:3:" "END LAB without a BEGIN LAB"

bad_file bad_id <<'EOF'
void f() {
  // BEGIN LAB(lab1-rms-norm)
  // END LAB
}
EOF
malformed bad_id "code/bad.cpp:2:" "malformed lab part id 'lab1-rms-norm'"

bad_file upper_id <<'EOF'
void f() {
  // BEGIN LAB(lab01-RmsNorm)
  // END LAB
}
EOF
malformed upper_id "code/bad.cpp:2:" "malformed lab part id 'lab01-RmsNorm'"

bad_file no_parens <<'EOF'
void f() {
  // BEGIN LAB lab01-rms-norm
  // END LAB
}
EOF
malformed no_parens "code/bad.cpp:2:" "malformed lab marker"

bad_file mismatched_end <<'EOF'
void f() {
  // BEGIN LAB(lab01-rms-norm)
  // END LAB(lab01-rope)
}
EOF
malformed mismatched_end "code/bad.cpp:3:" "closes BEGIN LAB(lab01-rms-norm)"

bad_cuda_file unknown_flag <<'EOF'
__global__ void f() {
  // BEGIN LAB(lab04-paged, foo)
  // END LAB
}
EOF
malformed unknown_flag "code/bad.cu:2:" "unknown lab region flag 'foo'"

bad_cuda_file empty_flag <<'EOF'
__global__ void f() {
  // BEGIN LAB(lab04-paged, )
  // END LAB
}
EOF
malformed empty_flag "code/bad.cu:2:" "unknown lab region flag ''"

bad_cuda_file two_flags <<'EOF'
__global__ void f() {
  // BEGIN LAB(lab04-paged, device, host)
  // END LAB
}
EOF
malformed two_flags "code/bad.cu:2:" "unknown lab region flag 'device, host'"

bad_file device_in_cpp <<'EOF'
void f() {
  // BEGIN LAB(lab04-paged, device)
  // END LAB
}
EOF
malformed device_in_cpp "code/bad.cpp:2:" "not .cu or .cuh"

bad_cuda_file device_bad_id <<'EOF'
__global__ void f() {
  // BEGIN LAB(lab4-paged, device)
  // END LAB
}
EOF
malformed device_bad_id "code/bad.cu:2:" "malformed lab part id 'lab4-paged'"

bad_cuda_file device_mismatched_end <<'EOF'
__global__ void f() {
  // BEGIN LAB(lab04-paged, device)
  // END LAB(lab04-other, device)
}
EOF
malformed device_mismatched_end "code/bad.cu:3:" "closes BEGIN LAB(lab04-paged)"

# Two problems in one file are both reported.
bad_file two_errors <<'EOF'
// END LAB
void f() {
  // BEGIN LAB(lab01-x)
}
EOF
malformed two_errors "code/bad.cpp:1:" "END LAB without"
malformed two_errors "code/bad.cpp:3:" "no matching END LAB"

# --- zero regions and the non-git fallback -------------------------------------------------------
plain="$work/plain"
mkdir -p "$plain/code" "$plain/build-debug" "$plain/.git"
echo 'int main() { return 0; }' >"$plain/code/main.cpp"
echo 'junk' >"$plain/build-debug/CMakeCache.txt"
echo 'junk' >"$plain/.git/config"
echo 'echo hi' >"$plain/build.sh"
if "$tool" "$plain" "$work/plain_out" >"$out" 2>&1; then pass "zero regions: exit 0"; else fail "zero regions: exit 0" "$(cat "$out")"; fi
expect "zero regions: says so" file_has "$out" "no lab regions found"
expect "zero regions: .lab_parts empty" test -f "$work/plain_out/.lab_parts" -a ! -s "$work/plain_out/.lab_parts"
expect "non-git fallback copies sources" cmp -s "$plain/code/main.cpp" "$work/plain_out/code/main.cpp"
expect "non-git fallback skips build*/" test ! -e "$work/plain_out/build-debug"
expect "non-git fallback skips .git" test ! -e "$work/plain_out/.git"
expect "non-git fallback keeps files named build*" test -f "$work/plain_out/build.sh"

# --- CRLF files keep their line endings --------------------------------------------------------
crlf="$work/crlf"
new_repo "$crlf"
printf '#include <vector>\r\nint f() {\r\n  // BEGIN LAB(lab03-crlf)\r\n  return 1;\r\n  // END LAB\r\n}\r\n' >"$crlf/f.cc"
"$tool" "$crlf" "$work/crlf_out" >/dev/null 2>&1 || fail "CRLF: exit 0"
expect "CRLF: stub lines end in CRLF" \
  grep -q $'^  throw ::servelab::LabNotImplemented("lab03-crlf");\r$' "$work/crlf_out/f.cc"

echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
