#!/usr/bin/env bash
# Downloads (never installs) the Debian 12 packages that the GPU machine lacks into .carry/debs/,
# so that scripts/gpu_check.sh can unpack them there with `dpkg -x` and build against them.
# The GPU machine (Ubuntu 24.04, CUDA toolkit, no internet, no apt) has a compiler, cmake and the
# CUDA libraries, but none of our Debian build dependencies' headers. Run this here (it needs apt's
# package lists, not root); .carry/ is git-ignored and travels to the device with `carry`.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/fetch_gpu_deps.sh [--dest DIR] [--clean]

Downloads the .deb files scripts/gpu_check.sh needs on the GPU machine (default DIR: .carry/debs).
  --dest DIR   where the .deb files go
  --clean      delete DIR's .deb files first (otherwise files already there are kept)
EOF
}

cd "$(dirname "$0")/.."
dest=.carry/debs
clean=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) dest=$2; shift 2 ;;
    --clean) clean=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "fetch_gpu_deps: unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

# What each package is for. The -dev packages give headers, CMake/pkg-config files and link-time
# symlinks; the runtime ones give the shared objects they point at.
packages=(
  # header-only libraries (find_package: xtl, xtensor, xtensor-blas, nlohmann_json)
  xtl-dev libxtensor-dev libxtensor-blas-dev nlohmann-json3-dev
  # sentencepiece (pkg-config `sentencepiece`); libsentencepiece0 holds the .so files
  libsentencepiece-dev libsentencepiece0
  # OpenBLAS (pkg-config `openblas`, cblas.h). The libopenblas-dev/libopenblas0 meta packages only
  # hold docs; the pthread flavour holds the files. gpu_check.sh recreates the
  # update-alternatives links (cblas.h, openblas.pc, libblas.so...) that dpkg -x does not.
  libopenblas-pthread-dev libopenblas0-pthread
  # OpenBLAS' Fortran runtime: used on the device only when it has none of its own
  libgfortran5 libquadmath0
  # GoogleTest (static libraries and CMake config; GTestConfig also loads the GMock targets)
  libgtest-dev libgmock-dev
  # cpp-httplib (pkg-config `cpp-httplib`, Requires.private: openssl, zlib, brotli)
  libcpp-httplib-dev libcpp-httplib0.11 libbrotli-dev libbrotli1 libssl-dev zlib1g-dev
  # runtime libraries of the above: used on the device only when it has none of its own
  libssl3 zlib1g
)

if ! command -v apt-get >/dev/null; then
  echo "fetch_gpu_deps: apt-get is missing; run this on the Debian 12 development machine" >&2
  exit 1
fi

mkdir -p "$dest"
if [ "$clean" -eq 1 ]; then rm -f "$dest"/*.deb; fi
echo "fetch_gpu_deps: downloading ${#packages[@]} packages into $dest"
# apt-get download writes into the current folder. Run as root, apt warns that the sandbox user
# '_apt' cannot write there; that warning is harmless, so it is filtered out.
(cd "$dest" && apt-get download "${packages[@]}" 2> >(grep -v "unsandboxed as root" >&2))

# Several versions of one package (after an update) would confuse gpu_check.sh: keep the newest.
for package in "${packages[@]}"; do
  mapfile -t versions < <(ls -1 "$dest/${package}_"*.deb 2>/dev/null | sort -V)
  if [ "${#versions[@]}" -eq 0 ]; then
    echo "fetch_gpu_deps: $package was not downloaded" >&2
    exit 1
  fi
  if [ "${#versions[@]}" -gt 1 ]; then
    rm -f "${versions[@]:0:${#versions[@]}-1}"
  fi
done

echo
echo "fetch_gpu_deps: fetched"
for deb in "$dest"/*.deb; do
  printf '  %-60s %8s KiB\n' "$(basename "$deb")" "$(( $(stat -c %s "$deb") / 1024 ))"
done
total_bytes=$(du -cb "$dest"/*.deb | tail -1 | cut -f1)
echo "fetch_gpu_deps: $(ls "$dest"/*.deb | wc -l) files, $(( total_bytes / 1024 / 1024 )) MiB in $dest"
if [ "$total_bytes" -gt $(( 40 * 1024 * 1024 )) ]; then
  echo "fetch_gpu_deps: warning: more than 40 MiB; the device's carry limit is 64 MiB in all" >&2
fi
if ! git check-ignore -q "$dest"; then
  echo "fetch_gpu_deps: warning: $dest is not git-ignored; add /.carry/ to .gitignore" >&2
fi
