#!/usr/bin/env bash
# Audits .github/ with zizmor (PyPI wheel, cached under ~/.cache/cutover-testbin/) in offline mode.
# Fails on any finding of medium severity or above.
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
"$dir/zizmor" --offline --min-severity medium .github/
