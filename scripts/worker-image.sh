#!/usr/bin/env bash
# Builds the worker's image from worker/Dockerfile here, without a daemon: buildah (Debian's,
# `bud`, chroot isolation, vfs storage under the test-bin cache), no Docker engine. Docker Hub is
# out of reach on this machine, so the Dockerfile's BASE (debian:bookworm-slim in the release
# workflow) is a Debian bookworm minbase made once by debootstrap from the Debian archive and
# cached; the Dockerfile's own RUN (apt-get install postgresql-client-15) runs as written.
#
#   worker-image.sh build BINARY     image with BINARY as cutover; prints the image name last
#   worker-image.sh run IMAGE CMD..  runs CMD in a container of IMAGE (as the image's user)
#   worker-image.sh inspect IMAGE    the image as buildah describes it (JSON; OCIv1.config)
#
# tests/tests/worker_image.rs builds it with the freshly built binary and checks its contents.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cutover-testbin"
store="$cache/buildah"
bh() {
  buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"
}
export BUILDAH_ISOLATION=chroot
BASE=localhost/cutover-base/debian:bookworm-minbase

base() {
  if bh images --quiet "$BASE" >/dev/null 2>&1; then return 0; fi
  local rootfs="$cache/debian-bookworm-minbase.tar"
  if [ ! -f "$rootfs" ]; then
    echo "worker-image: debootstrap bookworm (minbase) from the Debian archive" >&2
    local tmp
    tmp=$(mktemp -d)
    debootstrap --variant=minbase bookworm "$tmp/rootfs" http://deb.debian.org/debian >&2
    rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/lib/apt/lists/*
    tar --numeric-owner -C "$tmp/rootfs" -cf "$rootfs.tmp" .
    rm -rf "$tmp"
    mv "$rootfs.tmp" "$rootfs"
  fi
  local c
  c=$(bh from scratch)
  bh add "$c" "$rootfs" / >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  bh commit --quiet "$c" "$BASE" >/dev/null
  bh rm "$c" >/dev/null
}

case "${1:-}" in
  build)
    binary=${2:?usage: worker-image.sh build BINARY}
    base
    ctx=$(mktemp -d)
    trap 'rm -rf "$ctx"' EXIT
    case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
    install -m 0755 "$binary" "$ctx/cutover-$arch"
    image=localhost/cutover-worker:test
    bh bud --pull=never --layers --quiet --build-arg "BASE=$BASE" \
      -f worker/Dockerfile -t "$image" "$ctx" >&2
    # The previous build's layers (vfs stores each in full).
    bh rmi --prune >/dev/null 2>&1 || true
    echo "$image"
    ;;
  run)
    image=${2:?usage: worker-image.sh run IMAGE CMD...}
    shift 2
    c=$(bh from --pull=never "$image")
    trap 'bh rm "$c" >/dev/null' EXIT
    bh run "$c" -- "$@"
    ;;
  inspect)
    bh inspect --type image "${2:?usage: worker-image.sh inspect IMAGE}"
    ;;
  *)
    echo "usage: worker-image.sh build BINARY | run IMAGE CMD... | inspect IMAGE" >&2
    exit 2
    ;;
esac
