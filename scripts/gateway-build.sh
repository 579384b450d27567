#!/usr/bin/env bash
# Builds (once) and caches the test gateway: Traefik, the Gateway API implementation the
# Kubernetes tests send real traffic through, from its published Go module at a pinned version.
# Prints the binary's path as its last line. A cold build takes ~5 min on 2 cores (v3.7 needs modules the proxy here does not serve).
#
# Traefik's go.mod replaces github.com/traefik/traefik/dynamic/ext with ./pkg/config/dynamic/ext,
# a nested module that the published module zip leaves out (Go drops nested modules from zips),
# and embeds webui/static, which is built by npm and not in the zip either. So the module source
# is copied into a scratch folder, built as the main module, with the extension module written
# here (its types are the empty extension points Traefik's open-source build uses) and an empty
# web UI (the dashboard is not used by the tests).
set -euo pipefail
# shellcheck source=scripts/go-module.sh
. "$(dirname "$0")/go-module.sh"
TRAEFIK_VERSION=v3.6.12
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin"
out="$cache/traefik-$TRAEFIK_VERSION"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

if [ ! -x "$out/traefik" ]; then
  echo "gateway-build: building traefik $TRAEFIK_VERSION into $out" >&2
  mkdir -p "$out"
  tmp=$(mktemp -d)
  trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
  module_copy "github.com/traefik/traefik/v3@$TRAEFIK_VERSION" "$tmp/traefik"
  ext="$tmp/traefik/pkg/config/dynamic/ext"
  mkdir -p "$ext" "$tmp/traefik/webui/static"
  printf 'module github.com/traefik/traefik/dynamic/ext\n\ngo 1.24.0\n' >"$ext/go.mod"
  cat >"$ext/ext.go" <<'EOF'
// Package ext holds the extension points of Traefik's dynamic configuration; the open-source
// build leaves them empty. Written by cutover's scripts/gateway-build.sh.
package ext

type HTTP struct{}

type Router struct{}

type RouterIng struct{}

func (RouterIng) ToRouter() Router { return Router{} }
EOF
  echo '<!doctype html><title>traefik</title>' >"$tmp/traefik/webui/static/index.html"
  (cd "$tmp/traefik" && go build -trimpath \
    -ldflags "-s -w -X github.com/traefik/traefik/v3/pkg/version.Version=$TRAEFIK_VERSION" \
    -o "$out/traefik.tmp" ./cmd/traefik)
  mv "$out/traefik.tmp" "$out/traefik"
fi
"$out/traefik" version >&2
echo "$out/traefik"
