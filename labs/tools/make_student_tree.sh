#!/usr/bin/env bash
# make_student_tree.sh: copies the servelab tree and replaces every lab region with a stub, so a
# student gets code that compiles and whose lab tests fail until the region is written again.
# It changes nothing but the lab regions (and one #include the stubs need); it never edits SRC_DIR.
#
# Usage:
#   make_student_tree.sh [--lab labNN|PART] SRC_DIR DEST_DIR   make the student tree
#   make_student_tree.sh --list SRC_DIR                         only check the markers and print
#                                                               "part<TAB>file<TAB>line<TAB>kind"
#                                                               per region (kind: host or device)
# A lab region, in any *.h *.hpp *.cpp *.cc *.cu *.cuh file, is
#   <indent>// BEGIN LAB(lab01-rms-norm)
#   ... reference code ...
#   <indent>// END LAB
# and becomes
#   <indent>// BEGIN LAB(lab01-rms-norm): your code here. See labs/ for the handout.
#   <indent>throw ::servelab::LabNotImplemented("lab01-rms-norm");
#   <indent>// END LAB
# A device region, in a *.cu or *.cuh file, is marked // BEGIN LAB(lab04-part, device): code that
# runs on the GPU, where nothing can throw. Its stub is a comment and nothing else, so the kernel
# compiles and does none of the region's work. One part may have device and host regions (e.g. a
# kernel body and its launcher); the host region's throw then names the part when its tests run.
# --lab lab01 stubs only lab01's regions (--lab lab01-rope: only that part); the others keep the
# reference code. DEST_DIR/.lab_parts lists every part id found, one per line, sorted.
set -euo pipefail

readonly PROGRAM=make_student_tree
readonly STUB_INCLUDE='#include "common/error.h"'

usage() {
  cat >&2 <<'EOF'
usage: make_student_tree.sh [--lab labNN|PART_ID] SRC_DIR DEST_DIR
       make_student_tree.sh --list SRC_DIR
EOF
  exit 2
}

die() {
  echo "$PROGRAM: error: $*" >&2
  exit 1
}

# One awk program for both jobs, so the marker grammar is written once.
#   mode=scan: reads many files; prints "R<TAB>file<TAB>begin_line<TAB>part<TAB>kind" per valid
#              region (kind: host or device) and "E<TAB>file:line: error: ..." per problem (W for
#              warnings).
#   mode=stub: reads one file; prints it with the selected regions stubbed (filter: "" for all,
#              "labNN" for one lab, or one part id) and the error.h include added where needed.
# Written for POSIX awk (Debian's default is mawk: no regex intervals, no gensub).
read -r -d '' MARKER_AWK <<'AWK' || true
function strip_cr(text) { sub(/\r$/, "", text); return text }
function is_begin(text) { return text ~ /^[ \t]*\/\/[ \t]*BEGIN[ \t]+LAB([^A-Za-z0-9_]|$)/ }
function is_end(text) { return text ~ /^[ \t]*\/\/[ \t]*END[ \t]+LAB([^A-Za-z0-9_]|$)/ }
function valid_part(id) { return id ~ /^lab[0-9][0-9]-[a-z0-9-]+$/ }
# Text after the keyword LAB, e.g. "(lab01-rope): your code here".
function after_keyword(text) { sub(/^[ \t]*\/\/[ \t]*(BEGIN|END)[ \t]+LAB/, "", text); return text }
# The text inside "(...)" at the start of rest, or "" if rest does not start with a closed "(".
function paren_text(rest,   close_at) {
  if (substr(rest, 1, 1) != "(") return ""
  close_at = index(rest, ")")
  if (close_at == 0) return ""
  return substr(rest, 2, close_at - 2)
}
# The part id: the text inside "(...)" up to an optional ", flag".
function paren_id(rest,   text, comma) {
  text = paren_text(rest)
  comma = index(text, ",")
  if (comma == 0) return text
  text = substr(text, 1, comma - 1)
  sub(/[ \t]+$/, "", text)
  return text
}
# The flag after the comma ("device"), "" when there is none.
function paren_flag(rest,   text, comma) {
  text = paren_text(rest)
  comma = index(text, ",")
  if (comma == 0) return ""
  text = substr(text, comma + 1)
  sub(/^[ \t]+/, "", text)
  sub(/[ \t]+$/, "", text)
  return text
}
function has_flag(rest) { return index(paren_text(rest), ",") > 0 }
function is_cuda_file(name) { return name ~ /\.(cu|cuh)$/ }
function indent_of(text) { match(text, /^[ \t]*/); return substr(text, 1, RLENGTH) }
function report(kind, line, message) { printf "%s\t%s:%d: %s\n", kind, FILENAME, line, message }
function selected(id) {
  if (filter == "") return 1
  if (filter ~ /^lab[0-9][0-9]$/) return index(id, filter "-") == 1
  return id == filter
}
function finish_file() {
  if (file_open && open_line > 0)
    printf "E\t%s:%d: error: BEGIN LAB(%s) has no matching END LAB before the end of the file\n", current_file, open_line, open_id
  open_line = 0
  nested = 0
}

FNR == 1 { if (mode == "scan") finish_file(); current_file = FILENAME; file_open = 1 }

mode == "scan" {
  text = strip_cr($0)
  if (is_begin(text)) {
    rest = after_keyword(text)
    id = paren_id(rest)
    flag = paren_flag(rest)
    if (open_line > 0) {
      report("E", FNR, "error: nested BEGIN LAB inside BEGIN LAB(" open_id ") opened at line " open_line "; close it with // END LAB first")
      nested++
      next
    }
    if (id == "" || !valid_part(id)) {
      if (substr(rest, 1, 1) != "(" || index(rest, ")") == 0)
        report("E", FNR, "error: malformed lab marker, expected // BEGIN LAB(labNN-part)")
      else
        report("E", FNR, "error: malformed lab part id '" id "', expected labNN-part (lowercase letters, digits, dashes; regex ^lab[0-9]{2}-[a-z0-9-]+$)")
      open_id = (id == "" ? "?" : id); open_line = FNR; open_valid = 0
      next
    }
    if (has_flag(rest) && flag != "device") {
      report("E", FNR, "error: unknown lab region flag '" flag "' in BEGIN LAB(" id ", " flag "); the only flag is device: // BEGIN LAB(" id ", device)")
      open_id = id; open_line = FNR; open_valid = 0
      next
    }
    if (flag == "device" && !is_cuda_file(FILENAME)) {
      report("E", FNR, "error: BEGIN LAB(" id ", device) in a file that is not .cu or .cuh; device regions hold GPU code (drop \", device\" for host code, whose stub throws)")
      open_id = id; open_line = FNR; open_valid = 0
      next
    }
    open_id = id; open_line = FNR; open_valid = 1; open_kind = (flag == "device" ? "device" : "host")
    next
  }
  if (is_end(text)) {
    rest = after_keyword(text)
    if (open_line == 0) { report("E", FNR, "error: END LAB without a BEGIN LAB before it"); next }
    # The END of a nested region closes the nested one (already reported), not the outer one.
    if (nested > 0) { nested--; next }
    end_id = paren_id(rest)
    if (end_id != "" && open_valid && end_id != open_id)
      report("E", FNR, "error: END LAB(" end_id ") closes BEGIN LAB(" open_id ") opened at line " open_line)
    else if (open_valid)
      printf "R\t%s\t%d\t%s\t%s\n", FILENAME, open_line, open_id, open_kind
    open_line = 0
    next
  }
  # A marker after code on the same line is not a marker: say so, since the region would leak.
  if ((text ~ /\/\/[ \t]*BEGIN[ \t]+LAB\(/ || text ~ /\/\/[ \t]*END[ \t]+LAB([^A-Za-z0-9_]|$)/) &&
      text !~ /^[ \t]*(\/\/|\/\*|\*)/)
    report("W", FNR, "warning: lab marker after code is ignored; put // BEGIN LAB(...) and // END LAB on lines of their own")
  next
}

mode == "stub" {
  text = strip_cr($0)
  eol = ($0 ~ /\r$/) ? "\r" : ""
  if (inside) {
    if (is_end(text)) { out[++count] = $0; inside = 0; depth_of[count] = -1 }
    next
  }
  if (is_begin(text)) {
    id = paren_id(after_keyword(text))
    if (selected(id)) {
      indent = indent_of(text)
      if (paren_flag(after_keyword(text)) == "device") {
        # Device code cannot throw: the stub is a comment, and the file needs no new include.
        out[++count] = indent "// BEGIN LAB(" id ", device): your code here. See labs/ for the handout." eol
        out[++count] = indent "// Device code cannot throw, so this stub is empty: the part's tests fail until you write it." eol
      } else {
        out[++count] = indent "// BEGIN LAB(" id "): your code here. See labs/ for the handout." eol
        out[++count] = indent "throw ::servelab::LabNotImplemented(\"" id "\");" eol
        stubbed++
      }
      depth_of[count - 1] = -1; depth_of[count] = -1
      inside = 1
      next
    }
  }
  out[++count] = $0
  depth_of[count] = -1
  if (text ~ /^[ \t]*#[ \t]*if/) pp_depth++
  else if (text ~ /^[ \t]*#[ \t]*endif/) pp_depth--
  else if (text ~ /^[ \t]*#[ \t]*include[ \t]*[<"]common\/error\.h[>"]/) has_error_include = 1
  else if (text ~ /^[ \t]*#[ \t]*include/) depth_of[count] = pp_depth
  else if (text ~ /^[ \t]*#[ \t]*pragma[ \t]+once/) pragma_line = count
  next
}

END {
  if (mode == "scan") { finish_file(); exit }
  # Insert the include after the last #include at the shallowest #if depth, so it lands next to
  # the others and outside any conditional block (a header guard counts as one level for all).
  insert_after = -1
  if (stubbed > 0 && !has_error_include) {
    best_depth = -1
    for (i = 1; i <= count; i++)
      if (depth_of[i] >= 0 && (best_depth < 0 || depth_of[i] <= best_depth)) { best_depth = depth_of[i]; insert_after = i }
    if (insert_after < 0) insert_after = pragma_line + 0
    print "I" > "/dev/stderr"
  }
  # Match the line endings of the file (CRLF files stay CRLF).
  include_eol = (count > 0 && out[insert_after > 0 ? insert_after : 1] ~ /\r$/) ? "\r" : ""
  if (insert_after == 0) print include_line include_eol
  for (i = 1; i <= count; i++) {
    print out[i]
    if (i == insert_after) print include_line include_eol
  }
}
AWK

is_source_file() {
  case "$1" in
    *.h | *.hpp | *.cpp | *.cc | *.cu | *.cuh) return 0 ;;
    *) return 1 ;;
  esac
}

# Prints the files of the tree at $1, NUL-separated, relative to it: what git would track (build
# dirs and other ignored files are left out), or everything but .git and top-level build*/ when
# $1 is not a git work tree. $2, if inside $1, is left out too (the tree being made).
list_tree_files() {
  local src=$1 dest_abs=${2:-}
  if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    local path
    while IFS= read -r -d '' path; do
      # --cached still lists files deleted from the work tree; copy only what exists.
      if [[ -e "$src/$path" || -L "$src/$path" ]]; then printf '%s\0' "$path"; fi
    done < <(git -C "$src" ls-files -z --cached --others --exclude-standard | sort -zu)
  else
    local prune=(-path ./.git -o -type d -path './build*')
    if [[ -n "$dest_abs" && "$dest_abs" == "$(cd "$src" && pwd -P)"/* ]]; then
      prune+=(-o -path "./${dest_abs#"$(cd "$src" && pwd -P)"/}")
    fi
    (cd "$src" && find . \( "${prune[@]}" \) -prune -o \( -type f -o -type l \) -print0) |
      sed -z 's|^\./||' | sort -z
  fi
}

# Runs the scan over the source files of $1 (file list on stdin, NUL-separated); prints the scan
# records. Files are read relative to $1 so the messages name repository paths.
scan_sources() {
  local src=$1
  (cd "$src" && xargs -0 -r awk -v mode=scan "$MARKER_AWK")
}

# --- arguments ---------------------------------------------------------------------------------
filter=""
list_only=0
positional=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --lab)
      [[ $# -ge 2 ]] || usage
      filter=$2
      shift 2
      ;;
    --lab=*)
      filter=${1#--lab=}
      shift
      ;;
    --list)
      list_only=1
      shift
      ;;
    -h | --help) usage ;;
    --) shift; positional+=("$@"); break ;;
    -*) echo "$PROGRAM: unknown option $1" >&2; usage ;;
    *) positional+=("$1"); shift ;;
  esac
done
if [[ -n "$filter" && ! "$filter" =~ ^lab[0-9]{2}(-[a-z0-9-]+)?$ ]]; then
  die "--lab wants a lab (lab01) or a part id (lab01-rms-norm), got '$filter'"
fi
if ((list_only)); then
  [[ ${#positional[@]} -eq 1 ]] || usage
else
  [[ ${#positional[@]} -eq 2 ]] || usage
fi

src=${positional[0]}
[[ -d "$src" ]] || die "source directory '$src' does not exist"
src_abs=$(cd "$src" && pwd -P)

dest="" dest_abs=""
if ((!list_only)); then
  dest=${positional[1]}
  if [[ -e "$dest" && ! -d "$dest" ]]; then die "'$dest' exists and is not a directory"; fi
  if [[ -d "$dest" ]] && [[ -n "$(ls -A "$dest")" ]]; then
    die "'$dest' is not empty; give a new or empty directory (the tool never overwrites files)"
  fi
  dest_parent=$(dirname "$dest")
  [[ -d "$dest_parent" ]] || die "the parent directory of '$dest' does not exist"
  dest_abs="$(cd "$dest_parent" && pwd -P)/$(basename "$dest")"
  [[ "$dest_abs" != "$src_abs" ]] || die "SRC_DIR and DEST_DIR are the same directory"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/make_student_tree.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- check every marker before touching anything -----------------------------------------------
list_tree_files "$src" "$dest_abs" >"$work/files"
while IFS= read -r -d '' path; do
  if is_source_file "$path" && [[ -f "$src/$path" ]]; then printf '%s\0' "$path"; fi
done <"$work/files" >"$work/sources"
scan_sources "$src" <"$work/sources" >"$work/scan"

grep $'^W\t' "$work/scan" | cut -f2- >&2 || true
if grep -q $'^E\t' "$work/scan"; then
  grep $'^E\t' "$work/scan" | cut -f2- >&2
  die "$(grep -c $'^E\t' "$work/scan") malformed lab marker(s) in $src; nothing was written"
fi
grep $'^R\t' "$work/scan" | cut -f2- | sort -t $'\t' -k3,3 -k1,1 -k2,2n >"$work/regions" || true

if ((list_only)); then
  awk -F '\t' '{ printf "%s\t%s\t%s\t%s\n", $3, $1, $2, $4 }' "$work/regions"
  exit 0
fi

filter_pattern="^${filter}\$"
[[ "$filter" =~ ^lab[0-9]{2}$ ]] && filter_pattern="^${filter}-"
if [[ -n "$filter" ]] && ! cut -f3 "$work/regions" | grep -q -E "$filter_pattern"; then
  echo "$PROGRAM: warning: --lab $filter matches no lab region; the tree is copied unchanged" >&2
fi

# --- copy --------------------------------------------------------------------------------------
mkdir -p "$dest"
file_count=$(tr -cd '\0' <"$work/files" | wc -c)
if [[ $file_count -gt 0 ]]; then
  tar -C "$src" --null --no-recursion -T "$work/files" -cf - | tar -C "$dest" -xf -
fi

# --- stub --------------------------------------------------------------------------------------
: >"$work/includes_added"
while IFS= read -r path; do
  target="$dest/$path"
  if ! awk -v mode=stub -v filter="$filter" -v include_line="$STUB_INCLUDE" "$MARKER_AWK" \
    "$target" >"$work/stubbed" 2>"$work/stub_notes"; then
    die "failed to stub $path"
  fi
  if ! cmp -s "$target" "$work/stubbed"; then
    # Write through the existing file so its permissions stay as they were.
    cat "$work/stubbed" >"$target"
  fi
  if grep -q '^I$' "$work/stub_notes"; then echo "$path" >>"$work/includes_added"; fi
done < <(cut -f1 "$work/regions" | sort -u)

cut -f3 "$work/regions" | sort -u >"$dest/.lab_parts"

# --- summary -----------------------------------------------------------------------------------
echo "$PROGRAM: copied $file_count files from $src to $dest"
if [[ ! -s "$work/regions" ]]; then
  echo "$PROGRAM: no lab regions found; $dest/.lab_parts is empty"
  exit 0
fi
awk -F '\t' -v filter="$filter" '
  function selected(id) {
    if (filter == "") return 1
    if (filter ~ /^lab[0-9][0-9]$/) return index(id, filter "-") == 1
    return id == filter
  }
  {
    part = $3
    if (!(part in regions)) order[++parts] = part
    regions[part]++
    if ($4 == "device") device[part]++
    if (!((part, $1) in seen)) { seen[part, $1] = 1; files[part] = files[part] " " $1 }
  }
  END {
    printf "%-32s %-8s %-7s %-9s %s\n", "lab part", "regions", "device", "action", "files"
    for (i = 1; i <= parts; i++) {
      part = order[i]
      printf "%-32s %-8d %-7d %-9s%s\n", part, regions[part], device[part], selected(part) ? "stubbed" : "kept", files[part]
    }
  }' "$work/regions"
if [[ -s "$work/includes_added" ]]; then
  echo "$PROGRAM: added $STUB_INCLUDE to: $(tr '\n' ' ' <"$work/includes_added")"
fi
