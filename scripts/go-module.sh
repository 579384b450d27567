# shellcheck shell=bash
# Sourced by the test-bed build scripts (gateway-, prometheus-, registry-, argo-rollouts-build.sh).
#
# module_dir MODULE@VERSION: downloads a published Go module (module cache, GOFLAGS=-mod=mod)
# and prints its read-only source folder; fails naming the module when it cannot.
module_dir() {
  local dir scratch
  scratch=$(mktemp -d)
  dir=$(cd "$scratch" && go mod download -json "$1" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  rmdir "$scratch"
  [ -d "$dir" ] || { echo "$(basename "$0"): source of $1 not found" >&2; return 1; }
  echo "$dir"
}

# module_copy MODULE@VERSION DEST: a writable copy of the module's source at DEST, to build it as
# the main module (only a main module's replace directives apply).
module_copy() {
  local src
  src=$(module_dir "$1")
  cp -r "$src" "$2"
  chmod -R u+w "$2"
}
