#!/usr/bin/env bash
# Builds (once) and caches the Argo Rollouts controller, the peer the comparison with Argo
# Rollouts (issue 14) runs against the Kubernetes test bed, from its published Go module at a
# pinned release, with its CRDs (Rollout, AnalysisTemplate, AnalysisRun, ...) beside it. Prints
# the cache folder (bin/rollouts-controller, crds/) as its last line. A cold build takes ~3-5 min
# on 2 cores. Used by tests/tests/argo_rollouts.rs and `cutover-bench --only argo` (the
# side-by-side comparison).
#
# No Gateway API traffic router: its plugin (argoproj-labs/rollouts-plugin-trafficrouter-
# gatewayapi) is not served by this machine's Go module proxy (403 for every version tried,
# v0.4.0 to v0.15.0), so the comparison's Argo canary is the replica-count canary.
#
# v1.10.1, not v1.10.2: v1.10.2's go.mod needs Go 1.26.10 and this machine has 1.26.8. The
# module's go.mod replaces the Kubernetes modules with its own versions, which only a main
# module honours, so the source is copied into a scratch folder and built as the main module.
set -euo pipefail
# shellcheck source=scripts/go-module.sh
. "$(dirname "$0")/go-module.sh"
ARGO_ROLLOUTS_VERSION=v1.10.1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin"
out="$cache/argo-rollouts-$ARGO_ROLLOUTS_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

if [ ! -x "$out/bin/rollouts-controller" ]; then
  echo "argo-rollouts-build: building the rollouts controller $ARGO_ROLLOUTS_VERSION into $out" >&2
  tmp=$(mktemp -d)
  trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
  module_copy "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION" "$tmp/argo-rollouts"
  mkdir -p "$out/bin" "$out/crds"
  (cd "$tmp/argo-rollouts" && go build -trimpath \
    -ldflags "-s -w -X github.com/argoproj/argo-rollouts/utils/version.version=$ARGO_ROLLOUTS_VERSION" \
    -o "$out/bin/rollouts-controller.tmp" ./cmd/rollouts-controller)
  cp "$tmp"/argo-rollouts/manifests/crds/*-crd.yaml "$out/crds/"
  mv "$out/bin/rollouts-controller.tmp" "$out/bin/rollouts-controller"
fi
echo "$out"
