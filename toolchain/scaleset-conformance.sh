#!/usr/bin/env bash
# Builds tests/scaleset_conformance (GitHub's own scale-set client, github.com/actions/scaleset v0.4.0,
# driving our emulator) from the Go module proxy into a cache folder keyed by its sources, go.mod, go.sum
# and the Go version. A finished build is published by an atomic rename, so an interrupted build never
# leaves a cache that later runs trust. Prints the binary's path as its only line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
. "$here/lib.sh"

SRC=$root/tests/scaleset_conformance
NAME=scaleset-conformance
GO_MIN=1.25.3   # the `go` line of github.com/actions/scaleset v0.4.0's go.mod
CACHE_ROOT=${GHR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ghr-toolchain}

command -v go >/dev/null ||
  die "find the go command" "install Go >= $GO_MIN (a Go release from go.dev, or a backport of golang-go) and rerun"
export CGO_ENABLED=0 GOWORK=off GOFLAGS="-mod=readonly -buildvcs=false" GOTOOLCHAIN=local
gov=$(go env GOVERSION); gov=${gov#go}
[ "$(printf '%s\n%s\n' "$GO_MIN" "$gov" | sort -V | head -n1)" = "$GO_MIN" ] ||
  die "build $NAME with go $gov" "github.com/actions/scaleset v0.4.0 needs Go >= $GO_MIN: install it and rerun"

# The key covers everything that shapes the binary, so any change rebuilds into a new folder.
mapfile -t files < <(cd "$SRC" && find . -maxdepth 1 -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) | LC_ALL=C sort)
[ ${#files[@]} -gt 2 ] || die "find the sources in $SRC" "restore tests/scaleset_conformance (go.mod, go.sum, *.go) from git"
SUM=$( { (cd "$SRC" && for f in "${files[@]}"; do printf '%s\n' "$f"; cat "$f"; done); echo "go$gov"; } | sha256sum | cut -c1-12)
PREFIX=$CACHE_ROOT/$NAME-$SUM

if [ -f "$PREFIX/.complete" ] && [ -x "$PREFIX/$NAME" ]; then
  log "$NAME cached in $PREFIX"
  echo "$PREFIX/$NAME"
  exit 0
fi

mkdir -p "$CACHE_ROOT"
W=$(mktemp -d "$CACHE_ROOT/.build-$NAME-XXXXXX")
trap 'rm -rf "$W"' EXIT
# Build from a copy: an edit during the build cannot end up under a key computed from other sources.
mkdir -p "$W/src" "$W/out"
(cd "$SRC" && cp "${files[@]}" "$W/src/")
step "build $NAME (github.com/actions/scaleset v0.4.0 from the Go module proxy)"
(cd "$W/src" && go mod download) >&2 ||
  die "download the Go modules of $NAME" "check that the Go module proxy ($(go env GOPROXY)) is reachable and rerun"
(cd "$W/src" && go build -trimpath -ldflags "-s -w" -o "$W/out/$NAME" .) >&2 ||
  die "build $NAME" "read the Go error above"
"$W/out/$NAME" -h >/dev/null 2>&1 || die "run the built $NAME" "delete $CACHE_ROOT/$NAME-* and rerun"
done_step

touch "$W/out/.complete"
# A folder without .complete is not ours to trust (an older layout, a manual copy): replace it.
if [ -e "$PREFIX" ] && [ ! -f "$PREFIX/.complete" ]; then rm -rf "$PREFIX"; fi
# mv -T refuses to move into an existing folder: a concurrent setup that published first wins.
if mv -T "$W/out" "$PREFIX" 2>/dev/null; then
  log "$NAME built into $PREFIX"
else
  [ -f "$PREFIX/.complete" ] || die "publish $PREFIX" "delete $PREFIX and rerun"
  log "$NAME: a concurrent setup published $PREFIX first; using it"
fi
echo "$PREFIX/$NAME"
