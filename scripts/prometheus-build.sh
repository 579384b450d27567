#!/usr/bin/env bash
# Builds (once) and caches Prometheus from its published Go module at a pinned version, with
# Kubernetes service discovery (Debian's prometheus package is built without it), for the
# Kubernetes tests: Prometheus finds the pods and the gateway through kubernetes_sd_configs
# against the test API server. Only the Kubernetes discoverer is compiled in (build tags
# remove_all_sd,enable_kubernetes_sd); no web UI assets. Prints the binary's path as its last
# line. A cold build takes ~4 min on 2 cores. (promtool and the other tests keep using Debian's.)
set -euo pipefail
# shellcheck source=scripts/go-module.sh
. "$(dirname "$0")/go-module.sh"
PROMETHEUS_MODULE_VERSION=v0.316.0   # Prometheus 3.16.0
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin"
out="$cache/prometheus-$PROMETHEUS_MODULE_VERSION"
# The module ships a go.work (for its own development): build the module alone.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off

if [ ! -x "$out/prometheus" ]; then
  echo "prometheus-build: building prometheus $PROMETHEUS_MODULE_VERSION into $out" >&2
  mkdir -p "$out"
  tmp=$(mktemp -d)
  trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
  module_copy "github.com/prometheus/prometheus@$PROMETHEUS_MODULE_VERSION" "$tmp/prometheus"
  (cd "$tmp/prometheus" && go build -trimpath -tags remove_all_sd,enable_kubernetes_sd \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_MODULE_VERSION" \
    -o "$out/prometheus.tmp" ./cmd/prometheus)
  mv "$out/prometheus.tmp" "$out/prometheus"
fi
"$out/prometheus" --version >&2
echo "$out/prometheus"
