#!/usr/bin/env bash
# check_labs.sh: proves that the labs work: every lab part's tests pass on the reference code, and
# in the student tree (regions stubbed) the whole tree still compiles and each part's tests fail.
# It builds only the lab test targets and never changes the source tree or the reference build's
# configuration. A part whose tests all carry the ctest label gpu and were all skipped (no GPU
# here) is reported as "skipped (no GPU)", and a part whose regions are all in .cu/.cuh files is
# reported as "skipped (no CUDA build)" when the reference build has CUDA off; neither fails the
# check.
#
# Usage: check_labs.sh [--student-dir DIR] [--keep] [--source SRC_DIR] [--lab labNN] REFERENCE_BUILD_DIR
#   REFERENCE_BUILD_DIR  a configured build of the project (tests on); its lab targets are built
#   --student-dir DIR    make the student tree there (new or empty) and keep it; default: a temp dir
#   --keep               keep the temp dir (the student tree, its build and the logs)
#   --source SRC_DIR     the reference source tree; default: the one REFERENCE_BUILD_DIR was
#                        configured from
#   --lab labNN          check only this lab (repeatable); the student tree still stubs them all
# Environment:
#   SERVELAB_LAB_CMAKE_ARGS  extra arguments for configuring the student tree (word-split)
#   SERVELAB_LAB_JOBS        build and test jobs, 1 or 2 (default 2)
#   SERVELAB_LAB_TIMEOUT     per-test timeout in seconds (default 300)
# Exit status: 0 when every part checks out (or there are no lab regions), 1 otherwise, 2 on usage.
set -euo pipefail

readonly PROGRAM=check_labs
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
readonly MAKE_STUDENT_TREE="$here/make_student_tree.sh"

usage() {
  sed -n '10,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
die() {
  echo "$PROGRAM: error: $*" >&2
  exit 1
}
say() { echo "$PROGRAM: $*"; }
# show_log_tail FILE: the end of a log, for a failed step.
show_log_tail() {
  echo "---- last lines of $1 ----" >&2
  tail -n 40 "$1" >&2
  echo "----" >&2
}

# --- arguments ---------------------------------------------------------------------------------
student_dir=""
only_labs=()
source_dir=""
keep=0
positional=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --student-dir) [[ $# -ge 2 ]] || usage; student_dir=$2; shift 2 ;;
    --student-dir=*) student_dir=${1#*=}; shift ;;
    --source) [[ $# -ge 2 ]] || usage; source_dir=$2; shift 2 ;;
    --source=*) source_dir=${1#*=}; shift ;;
    --keep) keep=1; shift ;;
    --lab) [[ $# -ge 2 ]] || usage; only_labs+=("$2"); shift 2 ;;
    --lab=*) only_labs+=("${1#*=}"); shift ;;
    -h | --help) usage ;;
    -*) echo "$PROGRAM: unknown option $1" >&2; usage ;;
    *) positional+=("$1"); shift ;;
  esac
done
[[ ${#positional[@]} -eq 1 ]] || usage

jobs=${SERVELAB_LAB_JOBS:-2}
[[ "$jobs" == 1 || "$jobs" == 2 ]] || die "SERVELAB_LAB_JOBS must be 1 or 2 (the machines are shared), got '$jobs'"
test_timeout=${SERVELAB_LAB_TIMEOUT:-300}
[[ "$test_timeout" =~ ^[0-9]+$ ]] || die "SERVELAB_LAB_TIMEOUT must be a number of seconds, got '$test_timeout'"

reference_build=${positional[0]}
[[ -f "$reference_build/CMakeCache.txt" ]] ||
  die "'$reference_build' is not a configured build directory (no CMakeCache.txt); configure and build the project first"
reference_build=$(cd "$reference_build" && pwd -P)

# cache_value NAME: a variable from the reference build's CMakeCache.txt ("" if absent).
cache_value() {
  sed -n "s/^$1:[A-Z]*=//p" "$reference_build/CMakeCache.txt" | head -n 1
}
# Whether the reference builds the CUDA targets (SERVELAB_CUDA not OFF, and nvcc found).
cuda_compiler=$(cache_value CMAKE_CUDA_COMPILER)
reference_cuda=0
if [[ "$(cache_value SERVELAB_CUDA)" != OFF && -n "$cuda_compiler" && "$cuda_compiler" != *NOTFOUND ]]; then
  reference_cuda=1
fi
if [[ -z "$source_dir" ]]; then
  source_dir=$(cache_value CMAKE_HOME_DIRECTORY)
  [[ -n "$source_dir" ]] || die "cannot tell the source directory of $reference_build; pass --source"
fi
[[ -d "$source_dir" ]] || die "source directory '$source_dir' does not exist"
source_dir=$(cd "$source_dir" && pwd -P)

work=$(mktemp -d "${TMPDIR:-/tmp}/check_labs.XXXXXX")
if ((keep)); then
  trap 'echo "$PROGRAM: kept $work"' EXIT
else
  trap 'rm -rf "$work"' EXIT
fi

# --- 1. the lab parts, from the markers in the source tree --------------------------------------
# make_student_tree.sh --list checks every marker and prints "part<TAB>file<TAB>line<TAB>kind".
if ! "$MAKE_STUDENT_TREE" --list "$source_dir" >"$work/regions"; then
  die "the lab markers in $source_dir are malformed (see above)"
fi
if [[ ! -s "$work/regions" ]]; then
  say "no lab regions in $source_dir; nothing to check"
  exit 0
fi
cut -f1 "$work/regions" | sort -u >"$work/parts"
# Parts whose every region is CUDA code (.cu/.cuh): their tests exist only in a CUDA build.
awk -F '\t' '{ if ($2 ~ /\.(cu|cuh)$/) cuda[$1] = 1; else host[$1] = 1 }
  END { for (part in cuda) if (!(part in host)) print part }' "$work/regions" | sort >"$work/cuda_parts"
if [[ ${#only_labs[@]} -gt 0 ]]; then
  for lab in "${only_labs[@]}"; do
    [[ "$lab" =~ ^lab[0-9]{2}$ ]] || die "--lab wants labNN, got '$lab'"
    grep -q "^$lab-" "$work/parts" || die "$lab has no lab regions in $source_dir"
  done
  printf '^%s-\n' "${only_labs[@]}" >"$work/only_labs"
  grep -f "$work/only_labs" "$work/parts" >"$work/parts.selected"
  mv "$work/parts.selected" "$work/parts"
fi
sed 's/-.*//' "$work/parts" | sort -u >"$work/labs"
say "source $source_dir: $(wc -l <"$work/parts") lab parts in labs $(paste -sd ' ' "$work/labs")"

# --- 2. the lab test targets -------------------------------------------------------------------
# lab_targets BUILD_DIR: the targets named labNN_tests (or labNN_<anything>_tests), one per line.
# "cmake --build --target help" lists targets as "... name" (Makefiles) or "name: phony" (Ninja).
lab_targets() {
  cmake --build "$1" --target help 2>/dev/null | tr -s ' :/\t' '\n' |
    grep -xE 'lab[0-9]{2}(_[a-z0-9_]+)?_tests' | sort -u || true
}
lab_targets "$reference_build" >"$work/targets"
problems=0
while IFS= read -r lab; do
  if ! grep -qE "^${lab}(_[a-z0-9_]+)?_tests$" "$work/targets"; then
    echo "$PROGRAM: error: $lab has lab regions but $reference_build has no target ${lab}_tests" \
      "(a labs/${lab}-<slug>/CMakeLists.txt, added from labs/CMakeLists.txt, with servelab_add_test(${lab}_tests ... LABELS ${lab}))" >&2
    problems=$((problems + 1))
  fi
done <"$work/labs"
while IFS= read -r target; do
  if ! grep -qxF "${target:0:5}" "$work/labs"; then
    echo "$PROGRAM: warning: target $target is neither built nor checked (its lab has no lab regions, or --lab left it out)" >&2
  fi
done <"$work/targets"
((problems == 0)) || die "missing lab test targets"
# Only the targets of the labs being checked are built (and run), in both trees.
mapfile -t targets < <(while IFS= read -r target; do
  if grep -qxF "${target:0:5}" "$work/labs"; then echo "$target"; fi
done <"$work/targets")

# --- 3. the reference: build the lab targets and run each lab's tests ---------------------------
say "building ${targets[*]} in $reference_build (-j$jobs)"
if ! cmake --build "$reference_build" --target "${targets[@]}" -j "$jobs" >"$work/reference_build.log" 2>&1; then
  show_log_tail "$work/reference_build.log"
  die "the reference build of the lab targets failed"
fi

# The tests labelled gpu in the reference build, one name per line ("  Test #12: Name" in ctest -N).
ctest --test-dir "$reference_build" -N -L '^gpu$' 2>/dev/null |
  sed -n 's/^ *Test *#[0-9]*: //p' >"$work/gpu_tests" || true

# run_lab_tests BUILD_DIR LAB NAME: runs the tests labelled LAB, writes $work/NAME_LAB.junit.xml
# and $work/NAME_LAB.log; prints ctest's exit status (a failing test is not an error here).
run_lab_tests() {
  local status=0
  ctest --test-dir "$1" -L "^$2\$" -j "$jobs" --timeout "$test_timeout" --output-on-failure \
    --output-junit "$work/$3_$2.junit.xml" >"$work/$3_$2.log" 2>&1 || status=$?
  echo "$status"
}

# junit_results FILE: one line per test case, "status<TAB>name<TAB>stub", where status is pass,
# fail or skip and stub lists the lab parts whose LabNotImplemented message the output shows.
# ctest writes each <testcase ...> start tag on one line; the captured output is XML-escaped, so
# it cannot hold a line that looks like a tag.
junit_results() {
  [[ -f "$1" ]] || return 0
  awk '
    function attribute(text, key,   start, rest) {
      start = index(text, " " key "=\"")
      if (start == 0) return ""
      rest = substr(text, start + length(key) + 3)
      return substr(rest, 1, index(rest, "\"") - 1)
    }
    function flush() {
      if (name != "") printf "%s\t%s\t%s\n", status, name, stub
      name = ""
    }
    /<testcase / {
      flush()
      name = attribute($0, "name")
      raw = attribute($0, "status")
      status = raw == "run" ? "pass" : (raw == "fail" ? "fail" : "skip")
      stub = ""
      if ($0 ~ /\/>[ \t]*$/) flush()
      next
    }
    /<\/testcase>/ { flush(); next }
    name != "" && /lab part lab[0-9][0-9]-[a-z0-9-]* is not implemented yet/ {
      text = $0
      sub(/.*lab part /, "", text)
      sub(/ is not implemented yet.*/, "", text)
      if (index(" " stub " ", " " text " ") == 0) stub = stub (stub == "" ? "" : " ") text
    }
    END { flush() }' "$1"
}

: >"$work/reference_results"
: >"$work/reference_failures"
while IFS= read -r lab; do
  status=$(run_lab_tests "$reference_build" "$lab" reference)
  junit_results "$work/reference_$lab.junit.xml" | sed "s/^/$lab\t/" >>"$work/reference_results"
  if [[ "$status" != 0 ]]; then
    echo "$lab" >>"$work/reference_failures"
    echo "$PROGRAM: error: the reference tests of $lab fail (ctest exit $status):" >&2
    awk -F '\t' -v lab="$lab" '$1 == lab && $2 == "fail" { print "  " $3 }' "$work/reference_results" >&2
    show_log_tail "$work/reference_$lab.log"
  fi
done <"$work/labs"

# --- 4. the student tree: make it, configure it, build the lab targets ---------------------------
if [[ -n "$student_dir" ]]; then
  student_tree=$student_dir
else
  student_tree="$work/student"
fi
say "making the student tree in $student_tree"
if ! "$MAKE_STUDENT_TREE" "$source_dir" "$student_tree" >"$work/make_student_tree.log" 2>&1; then
  cat "$work/make_student_tree.log" >&2
  die "make_student_tree.sh failed"
fi
student_tree=$(cd "$student_tree" && pwd -P)
student_build="$student_tree/build"

configure_args=(-S "$student_tree" -B "$student_build" -DCMAKE_BUILD_TYPE=Debug)
# CUDA as in the reference: with it, the stubbed kernels must compile and the CUDA lab targets
# exist in both trees; without it, neither tree has them.
if ((reference_cuda)); then
  configure_args+=(-DSERVELAB_CUDA=ON "-DCMAKE_CUDA_COMPILER=$cuda_compiler")
  cuda_architectures=$(cache_value CMAKE_CUDA_ARCHITECTURES)
  [[ -z "$cuda_architectures" ]] || configure_args+=("-DCMAKE_CUDA_ARCHITECTURES=$cuda_architectures")
else
  configure_args+=(-DSERVELAB_CUDA=OFF)
fi
generator=$(cache_value CMAKE_GENERATOR)
[[ -z "$generator" ]] || configure_args+=(-G "$generator")
compiler=$(cache_value CMAKE_CXX_COMPILER)
[[ -z "$compiler" ]] || configure_args+=("-DCMAKE_CXX_COMPILER=$compiler")
if [[ -n "${SERVELAB_LAB_CMAKE_ARGS:-}" ]]; then
  read -r -a extra_args <<<"$SERVELAB_LAB_CMAKE_ARGS"
  configure_args+=("${extra_args[@]}")
fi
say "configuring the student tree: cmake $(printf '%q ' "${configure_args[@]}")"
if ! cmake "${configure_args[@]}" >"$work/student_configure.log" 2>&1; then
  show_log_tail "$work/student_configure.log"
  die "configuring the student tree failed"
fi
lab_targets "$student_build" >"$work/student_targets"
if ! cmp -s "$work/targets" "$work/student_targets"; then
  die "the student tree has lab targets [$(tr '\n' ' ' <"$work/student_targets")] but the reference has [${targets[*]}]"
fi
say "building ${targets[*]} in the student tree (-j$jobs)"
if ! cmake --build "$student_build" --target "${targets[@]}" -j "$jobs" >"$work/student_build.log" 2>&1; then
  show_log_tail "$work/student_build.log"
  die "the student tree does not compile: a lab region must be statements whose removal still compiles (nothing after END LAB may use what the region declared)"
fi

: >"$work/student_results"
while IFS= read -r lab; do
  run_lab_tests "$student_build" "$lab" student >/dev/null
  junit_results "$work/student_$lab.junit.xml" | sed "s/^/$lab\t/" >>"$work/student_results"
done <"$work/labs"

# --- 5. the verdict per part -------------------------------------------------------------------
# A test belongs to part P when its gtest suite is CamelCase(P): ctest names discovered tests
# "Suite.Test", or "Prefix/Suite.Test/N" and "Suite/N.Test" for parameterised and typed tests.
awk -F '\t' -v problems_file="$work/problems" -v skipped_file="$work/skipped" \
  -v reference_failures="$work/reference_failures" -v gpu_tests="$work/gpu_tests" \
  -v cuda_parts="$work/cuda_parts" -v reference_cuda="$reference_cuda" '
  function camel(part,   pieces, count, i, out) {
    count = split(part, pieces, "-")
    out = ""
    for (i = 1; i <= count; i++) out = out toupper(substr(pieces[i], 1, 1)) substr(pieces[i], 2)
    return out
  }
  function suite_matches(test_name, suite,   head, pieces, count, i) {
    head = test_name
    sub(/\..*/, "", head)
    count = split(head, pieces, "/")
    for (i = 1; i <= count; i++) if (pieces[i] == suite) return 1
    return 0
  }
  FILENAME == ARGV[1] { parts[++part_count] = $1; next }
  FILENAME == ARGV[2] { reference[++reference_count] = $0; next }
  FILENAME == ARGV[3] { student[++student_count] = $0; next }
  FILENAME == reference_failures { lab_failed[$1] = 1; next }
  FILENAME == gpu_tests { gpu[$0] = 1; next }
  FILENAME == cuda_parts { cuda_only[$0] = 1; next }
  END {
    format = "%-6s %-28s %-26s %-10s %-10s %s\n"
    printf format, "lab", "part", "suite", "reference", "student", "verdict"
    printf format, "", "", "", "(passed)", "(failed)", ""
    bad = 0
    for (p = 1; p <= part_count; p++) {
      part = parts[p]; lab = substr(part, 1, 5); suite = camel(part)
      ref_total = ref_pass = ref_fail = ref_gpu = 0
      for (i = 1; i <= reference_count; i++) {
        split(reference[i], f, "\t")
        if (f[1] != lab || !suite_matches(f[3], suite)) continue
        ref_total++
        if (f[2] == "pass") ref_pass++
        if (f[2] == "fail") ref_fail++
        if (f[3] in gpu) ref_gpu++
      }
      stu_total = stu_fail = stub_seen = 0
      for (i = 1; i <= student_count; i++) {
        split(student[i], f, "\t")
        if (f[1] != lab || !suite_matches(f[3], suite)) continue
        stu_total++
        if (f[2] == "fail") {
          stu_fail++
          if (index(" " f[4] " ", " " part " ") > 0) stub_seen = 1
        }
      }
      if (ref_total == 0 && (part in cuda_only) && reference_cuda == 0)
        verdict = "skipped (no CUDA build)"
      else if (ref_total == 0) verdict = "FAIL: part " part " has no tests named " suite ".*"
      else if (ref_fail > 0) verdict = "FAIL: " ref_fail " of its reference tests fail"
      else if (ref_pass == 0 && ref_gpu == ref_total) verdict = "skipped (no GPU)"
      else if (ref_pass == 0) verdict = "FAIL: its reference tests were all skipped"
      else if (stu_total == 0) verdict = "FAIL: its tests did not run in the student tree"
      else if (stu_fail == 0) verdict = "FAIL: no " suite " test fails in the student tree (do the tests reach the region?)"
      else if (stub_seen) verdict = "ok"
      else verdict = "ok (failed without the LabNotImplemented message for " part ")"
      if (verdict ~ /^FAIL/) bad++
      if (verdict ~ /^skipped/) skipped++
      printf format, lab, part, suite, ref_pass "/" ref_total, stu_fail "/" stu_total, verdict
    }
    # Reference tests of a lab outside any part suite must pass too; list them all, so that a
    # misspelt suite name is easy to spot.
    for (i = 1; i <= reference_count; i++) {
      split(reference[i], f, "\t")
      owned = 0
      for (p = 1; p <= part_count; p++)
        if (substr(parts[p], 1, 5) == f[1] && suite_matches(f[3], camel(parts[p]))) owned = 1
      if (owned) continue
      if (f[2] == "fail") {
        printf "FAIL: %s test %s (in no part suite) fails on the reference\n", f[1], f[3]
        bad++
      } else {
        printf "note: %s test %s is in no part suite\n", f[1], f[3]
      }
    }
    # A lab whose ctest run failed without any failing test case (e.g. test discovery failed).
    for (lab in lab_failed) {
      failing = 0
      for (i = 1; i <= reference_count; i++) {
        split(reference[i], f, "\t")
        if (f[1] == lab && f[2] == "fail") failing = 1
      }
      if (!failing) { printf "FAIL: ctest failed on the reference for %s\n", lab; bad++ }
    }
    print bad > problems_file
    print skipped + 0 > skipped_file
  }' "$work/parts" "$work/reference_results" "$work/student_results" "$work/reference_failures" \
  "$work/gpu_tests" "$work/cuda_parts"

problem_count=$(cat "$work/problems")
if [[ "$problem_count" != 0 ]]; then
  if ((keep)); then
    die "$problem_count problem(s) with the labs (see the table above; logs in $work)"
  fi
  die "$problem_count problem(s) with the labs (see the table above; run with --keep to keep the logs)"
fi
skipped_count=$(cat "$work/skipped")
if [[ "$skipped_count" != 0 ]]; then
  say "all $(wc -l <"$work/parts") lab parts check out ($skipped_count skipped: they need a GPU or a CUDA build)"
else
  say "all $(wc -l <"$work/parts") lab parts check out"
fi
