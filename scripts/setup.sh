#!/usr/bin/env bash
# Installs the Debian 12 packages servelab needs to build, test and build its docs.
# Idempotent: packages already present are skipped, and apt is not touched when nothing is missing.
# Needs root (or sudo) only when something must be installed.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libxtensor-dev libxtensor-blas-dev libopenblas-dev
  nlohmann-json3-dev
  libsentencepiece-dev sentencepiece
  libcpp-httplib-dev
  libgtest-dev
  doxygen graphviz
  mkdocs
  clang-format
  python3
  gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} Debian packages are already installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "setup: these Debian packages are missing and I am not root (and sudo is absent):" >&2
  echo "  apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "setup: done"
