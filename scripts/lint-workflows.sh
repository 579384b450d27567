#!/usr/bin/env bash
# Lints every GitHub Actions file under .github/ and the worker's Dockerfile, offline:
#   - actionlint (built by scripts/registry-build.sh, cached), which runs shellcheck (apt, via
#     scripts/install-tools.sh) on every run: script;
#   - zizmor (PyPI wheel, cached under ~/.cache/cutover-testbin/), failing on any finding of
#     medium severity or above;
#   - shellcheck on the scripts the workflows and the composite action run (.github/scripts).
set -euo pipefail
cd "$(dirname "$0")/.."
ZIZMOR_VERSION=1.32.0
dir="${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin/zizmor-$ZIZMOR_VERSION"
if [ ! -x "$dir/zizmor" ]; then
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "zizmor==$ZIZMOR_VERSION"
  (cd "$tmp" && python3 -m zipfile -e zizmor-*.whl unpacked)
  mkdir -p "$dir"
  install -m 0755 "$tmp/unpacked/zizmor-$ZIZMOR_VERSION.data/scripts/zizmor" "$dir/zizmor"
  rm -rf "$tmp"
fi
tools=$(scripts/registry-build.sh 2>/dev/null | tail -n 1)
command -v shellcheck >/dev/null || { echo "lint-workflows: shellcheck missing (scripts/install-tools.sh)" >&2; exit 1; }
"$tools/bin/actionlint" -shellcheck "$(command -v shellcheck)" -no-color
echo "lint-workflows: actionlint (with shellcheck) clean: $(ls .github/workflows | wc -l) workflows"
shopt -s nullglob
scripts=(.github/scripts/*.sh)
if [ ${#scripts[@]} -gt 0 ]; then
  shellcheck "${scripts[@]}"
  echo "lint-workflows: shellcheck clean: ${scripts[*]}"
fi
"$dir/zizmor" --offline --min-severity medium .github/
