#!/usr/bin/env bash
# Builds (once) and caches the OCI test bed and the workflow linter from their published Go
# modules at pinned versions:
#   - registry: the CNCF distribution registry (the OCI registry the image preflight tests run);
#   - crane:    go-containerregistry's client (the tests push images with it);
#   - actionlint: the GitHub Actions linter (scripts/lint-workflows.sh; it runs shellcheck);
# and copies the Prometheus Operator's CRDs (ServiceMonitor, PodMonitor, PrometheusRule) from its
# published module into prometheus-operator-crds-<version>/ beside it, for the tests that have
# the API server accept k8s/worker and k8s/monitoring.
# Prints the cache folder (bin/registry, bin/crane, bin/actionlint) as its last line. A cold
# build takes ~4 min on 2 cores; each tool is built on its own, so an interrupted run resumes.
set -euo pipefail
# shellcheck source=scripts/go-module.sh
. "$(dirname "$0")/go-module.sh"
DISTRIBUTION_VERSION=v3.1.2
CRANE_VERSION=v0.22.1
ACTIONLINT_VERSION=v1.7.12
PROMETHEUS_OPERATOR_VERSION=v0.85.0
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
crds="$cache/prometheus-operator-crds-$PROMETHEUS_OPERATOR_VERSION"
if [ ! -f "$crds/monitoring.coreos.com_servicemonitors.yaml" ]; then
  src=$(module_dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION")
  mkdir -p "$crds.tmp"
  for k in servicemonitors podmonitors prometheusrules; do
    cp "$src/example/prometheus-operator-crd/monitoring.coreos.com_$k.yaml" "$crds.tmp/"
  done
  rm -rf "$crds" && mv "$crds.tmp" "$crds"
fi
"$out/bin/crane" version >&2
"$out/bin/actionlint" -version | head -1 >&2
echo "$out"
