#!/usr/bin/env bash
# Builds (once) and caches the OCI test bed and the workflow linter from their published Go
# modules at pinned versions:
#   - registry: the CNCF distribution registry (the OCI registry the image preflight tests run);
#   - crane:    go-containerregistry's client (the tests push images with it);
#   - actionlint: the GitHub Actions linter (scripts/lint-workflows.sh; it runs shellcheck).
# Prints the cache folder (bin/registry, bin/crane, bin/actionlint) as its last line. A cold
# build takes ~4 min on 2 cores; each tool is built on its own, so an interrupted run resumes.
set -euo pipefail
DISTRIBUTION_VERSION=v3.1.2
CRANE_VERSION=v0.22.1
ACTIONLINT_VERSION=v1.7.12
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin"
out="$cache/oci-registry-$DISTRIBUTION_VERSION-crane-$CRANE_VERSION-actionlint-$ACTIONLINT_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

build() { # name module@version package
  local name=$1 module=$2 pkg=$3
  [ -x "$out/bin/$name" ] && return 0
  echo "registry-build: building $name from $module" >&2
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && go mod init cutover-testbed >/dev/null 2>&1 && go get "$module" >/dev/null 2>&1 &&
    go build -trimpath -ldflags "-s -w" -o "$out/bin/$name.tmp" "$pkg")
  rm -rf "$tmp"
  mv "$out/bin/$name.tmp" "$out/bin/$name"
}
mkdir -p "$out/bin"
build registry "github.com/distribution/distribution/v3@$DISTRIBUTION_VERSION" \
  github.com/distribution/distribution/v3/cmd/registry
build crane "github.com/google/go-containerregistry@$CRANE_VERSION" \
  github.com/google/go-containerregistry/cmd/crane
build actionlint "github.com/rhysd/actionlint@$ACTIONLINT_VERSION" \
  github.com/rhysd/actionlint/cmd/actionlint
"$out/bin/crane" version >&2
"$out/bin/actionlint" -version | head -1 >&2
echo "$out"
