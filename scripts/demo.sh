#!/usr/bin/env bash
# The demo on the embedded default: Temporal dev server with its UI, the local platform with v1
# live, the cutover worker, steady traffic; deploys v2 to all four services, then a v3 that
# fails its post-switch checks and is rolled back automatically.
set -euo pipefail
cd "$(dirname "$0")/.."
export CUTOVER_TEMPORAL="${CUTOVER_TEMPORAL:-$(scripts/install-tools.sh | tail -n 1)}"
cargo build --release --bins
exec "${CARGO_TARGET_DIR:-target}/release/cutover-bench" --demo
