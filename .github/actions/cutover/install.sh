#!/usr/bin/env bash
# Installs a released `cutover` binary for this runner: downloads
#   $CUTOVER_RELEASE_URL/$CUTOVER_VERSION/cutover-linux-<x86_64|arm64>
# verifies its SHA-256 against the checksum pinned by the caller (never against a file from the
# same download), and only then installs it as $RUNNER_TEMP/cutover-bin/cutover and adds that
# folder to $GITHUB_PATH. A wrong checksum, a failed download or a bad input stops here, with
# nothing installed. Used by .github/actions/cutover (tests/tests/pipelines.rs runs it against
# a local file server).
#
# Inputs (environment): CUTOVER_VERSION (a release tag, vX.Y.Z), CUTOVER_SHA256_X86_64 and
# CUTOVER_SHA256_ARM64 (64 hex digits: the release's SHA256SUMS lines), CUTOVER_RELEASE_URL
# (https://, or http:// on a loopback address), RUNNER_TEMP, GITHUB_PATH.
set -euo pipefail

fail() { echo "::error::cutover install: $*" >&2; exit 1; }

version=${CUTOVER_VERSION:-}
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]] ||
  fail "version \"$version\" is not a release tag (vX.Y.Z)"
case "$(uname -m)" in
  x86_64 | amd64) arch=x86_64 expected=${CUTOVER_SHA256_X86_64:-} ;;
  aarch64 | arm64) arch=arm64 expected=${CUTOVER_SHA256_ARM64:-} ;;
  *) fail "no cutover release for $(uname -m) (x86_64 and arm64 only)" ;;
esac
[[ "$expected" =~ ^[0-9a-f]{64}$ ]] ||
  fail "the pinned SHA-256 of cutover-linux-$arch is missing or not 64 lowercase hex digits"
base=${CUTOVER_RELEASE_URL:-}
if [[ "$base" =~ ^http://(127\.[0-9]+\.[0-9]+\.[0-9]+|localhost)(:[0-9]+)?(/|$) ]]; then
  : # a local file server (the tests)
elif [[ ! "$base" =~ ^https:// ]]; then
  fail "release URL \"$base\" must be https://"
fi
: "${RUNNER_TEMP:?}" "${GITHUB_PATH:?}"

asset="cutover-linux-$arch"
url="${base%/}/$version/$asset"
work=$(mktemp -d "$RUNNER_TEMP/cutover-download.XXXXXX")
trap 'rm -rf "$work"' EXIT
curl --fail --silent --show-error --location --retry 3 --proto '=https,http' --proto-redir '=https' \
  --output "$work/$asset" "$url" || fail "download of $url failed"
actual=$(sha256sum "$work/$asset" | cut -d ' ' -f 1)
if [ "$actual" != "$expected" ]; then
  fail "checksum mismatch for $asset $version: expected $expected, got $actual (nothing installed)"
fi
dest="$RUNNER_TEMP/cutover-bin"
mkdir -p "$dest"
install -m 0755 "$work/$asset" "$dest/cutover"
echo "$dest" >>"$GITHUB_PATH"
echo "cutover $version ($asset, sha256 $actual) installed in $dest"
