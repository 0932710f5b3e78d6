#!/usr/bin/env bash
# Fetch GitHub's OpenAPI description (npm package @octokit/openapi, pinned) into
# .cache/openapi/<version>/ for the conformance tests. Idempotent: does nothing when the
# files are already there. Needs only `npm pack` (no node_modules, no install scripts).
#
#   tests/conformance/fetch_openapi.sh            # pinned version
#   OCTOKIT_OPENAPI_VERSION=23.0.1 tests/conformance/fetch_openapi.sh
set -euo pipefail

PINNED_VERSION="23.0.2"
# sha1 of the pinned tarball as the registry lists it (`npm view @octokit/openapi@23.0.2 dist.shasum`).
PINNED_SHASUM="743435033357133786d56271b48a67991a614b0a"

version="${OCTOKIT_OPENAPI_VERSION:-$PINNED_VERSION}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dest="${GHR_OPENAPI_DIR:-$root/.cache/openapi}/$version"
files=(api.github.com.json ghec.json)

if [[ -f "$dest/.complete" ]]; then
  echo "openapi: @octokit/openapi@$version already in $dest"
  exit 0
fi

die() { echo "fetch_openapi: error: $*" >&2; exit 1; }

command -v npm >/dev/null || die "npm is not installed (apt-get install -y npm); it is used only to download the package"
command -v sha1sum >/dev/null || die "sha1sum is missing (coreutils)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

registry="$(npm config get registry 2>/dev/null || echo unknown)"
echo "openapi: downloading @octokit/openapi@$version from $registry"
if ! (cd "$tmp" && timeout 600 npm pack --loglevel=error --ignore-scripts --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=10000 \
        --fetch-timeout=60000 "@octokit/openapi@$version" >pack.out 2>pack.err); then
  sed 's/^/  npm: /' "$tmp/pack.err" | tail -n 5 >&2
  if grep -qE 'ETARGET|E404|No matching version' "$tmp/pack.err"; then
    die "@octokit/openapi@$version does not exist on $registry (see: npm view @octokit/openapi versions)"
  fi
  die "could not download @octokit/openapi@$version from the npm registry ($registry): \
check network access to the registry (or npm's proxy/registry settings) and retry"
fi

tarball="$(find "$tmp" -maxdepth 1 -name "*.tgz" | head -n 1)"
[[ -n "$tarball" ]] || die "npm pack produced no tarball"
if [[ "$version" == "$PINNED_VERSION" ]]; then
  actual="$(sha1sum "$tarball" | cut -d' ' -f1)"
  [[ "$actual" == "$PINNED_SHASUM" ]] || die "checksum mismatch for @octokit/openapi@$version: got $actual, expected $PINNED_SHASUM"
fi

members=(package/package.json)
for f in "${files[@]}"; do members+=("package/generated/$f"); done
tar -xzf "$tarball" -C "$tmp" "${members[@]}" || die "the package lacks generated/{${files[*]}}; pick another version"

mkdir -p "$dest"
for f in "${files[@]}"; do
  mv "$tmp/package/generated/$f" "$dest/$f.part"
  mv "$dest/$f.part" "$dest/$f"
done
cp "$tmp/package/package.json" "$dest/package.json"
echo "$version" >"$dest/.complete"
echo "openapi: @octokit/openapi@$version ready in $dest"
