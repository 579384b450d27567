#!/usr/bin/env bash
# Builds (once) and caches the S3-compatible test server s3s-fs (crates.io, ~2.5 min) under
# ~/.cache/cutover-testbin/. Prints the binary's path as its last line.
set -euo pipefail
S3S_FS_VERSION=0.14.1
root="${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin/s3s-fs-$S3S_FS_VERSION"
if [ ! -x "$root/bin/s3s-fs" ]; then
  echo "building s3s-fs $S3S_FS_VERSION into $root ..." >&2
  cargo install "s3s-fs@$S3S_FS_VERSION" --features binary --locked --root "$root" >&2
fi
echo "$root/bin/s3s-fs"
