#!/usr/bin/env bash
# Runs every test: unit tests, the replay suite, and the integration tests that start the real
# Temporal dev server, the local platform, a Kubernetes control plane, PostgreSQL, an
# S3-compatible server and the cutover worker.
set -euo pipefail
cd "$(dirname "$0")/.."
export CUTOVER_TEMPORAL="${CUTOVER_TEMPORAL:-$(scripts/install-tools.sh | tail -n 1)}"
# The Kubernetes control plane for the kubernetes tests (built once from Go modules, cached).
export CUTOVER_K8S_BIN="${CUTOVER_K8S_BIN:-$(scripts/k8s-build.sh | tail -n 1)}"
# The test gateway (Traefik) and a Prometheus with Kubernetes service discovery, for the same
# tests (built once from Go modules, cached).
export CUTOVER_GATEWAY_BIN="${CUTOVER_GATEWAY_BIN:-$(scripts/gateway-build.sh | tail -n 1)}"
export CUTOVER_PROMETHEUS_BIN="${CUTOVER_PROMETHEUS_BIN:-$(scripts/prometheus-build.sh | tail -n 1)}"
# The S3-compatible server for the migration tests (built once with cargo install, cached).
export CUTOVER_S3S_FS="${CUTOVER_S3S_FS:-$(scripts/s3-build.sh | tail -n 1)}"
# The OCI registry and crane for the image preflight tests (and actionlint), and the
# Prometheus Operator's CRDs (built and copied once from Go modules, cached).
export CUTOVER_REGISTRY_BIN="${CUTOVER_REGISTRY_BIN:-$(scripts/registry-build.sh | tail -n 1)}"
# Argo Rollouts' controller and CRDs for tests/tests/argo_rollouts.rs (built once, cached).
export CUTOVER_ARGO_ROLLOUTS="${CUTOVER_ARGO_ROLLOUTS:-$(scripts/argo-rollouts-build.sh | tail -n 1)}"
cargo build --bins
# Integration tests each start their own servers; three at a time fit two cores.
cargo test --workspace --exclude tests -- --test-threads=3
targets=()
for f in tests/tests/*.rs; do
  name=$(basename "$f" .rs)
  [ "$name" = kubernetes ] || targets+=(--test "$name")
done
cargo test -p tests --bins "${targets[@]}" -- --test-threads=3
# A Kubernetes world is a control plane, kwok, a gateway, Prometheus, Temporal and a worker:
# one at a time (three, then two at once, starved each other's timing on two cores).
cargo test -p tests --test kubernetes -- --test-threads=1
