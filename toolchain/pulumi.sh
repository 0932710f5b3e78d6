#!/usr/bin/env bash
# Provides the pinned Pulumi CLI and a Python language host, with the SDK's two helper scripts
# beside it. Uses a matching `pulumi` on PATH when there is one (a connected machine's vendor
# install); otherwise builds from the Go module proxy into a versioned cache folder. A finished
# build is published by an atomic rename, so an interrupted build never leaves a cache that later
# runs trust. Prints the folder to put on PATH as its last line of stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/versions.sh"
. "$here/lib.sh"

CACHE_ROOT=${GHR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ghr-toolchain}
# The key covers everything that shapes the binaries, so a change rebuilds.
HOST_SUM=$(cat "$here/language-host/main.go" "$here/language-host/go.mod" "$here/versions.sh" | sha256sum | cut -c1-12)
PREFIX=$CACHE_ROOT/pulumi-v$PULUMI_VER-langhost-$HOST_SUM

# 1. The vendor's install on PATH, at the pinned version.
if command -v pulumi >/dev/null 2>&1 && [ "$(pulumi version 2>/dev/null)" = "v$PULUMI_VER" ] &&
   command -v pulumi-language-python >/dev/null 2>&1 && [ -z "${GHR_FORCE_BUILD:-}" ]; then
  log "using pulumi v$PULUMI_VER from $(dirname "$(command -v pulumi)")"
  dirname "$(command -v pulumi)"
  exit 0
fi

# 2. A finished build in the cache.
if [ -f "$PREFIX/.complete" ]; then
  log "pulumi v$PULUMI_VER cached in $PREFIX"
  echo "$PREFIX"
  exit 0
fi

# 3. Build from the Go module proxy.
command -v go >/dev/null || die "find the go command" "install Go >= 1.24 (apt-get install golang-go), or install pulumi v$PULUMI_VER yourself and rerun"
mkdir -p "$CACHE_ROOT"
W=$(mktemp -d "$CACHE_ROOT/.build-XXXXXX")
trap 'rm -rf "$W"' EXIT
OUT=$W/out; mkdir -p "$OUT"
export CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local

jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2"; }
# go mod download a module@version and copy its tree to $2 (writable)
dl() {
  (cd "$W" && go mod download -json "$1") >"$W/dl.json" 2>&1 || true
  local dir err
  dir=$(jget "$W/dl.json" Dir 2>/dev/null || true)
  err=$(jget "$W/dl.json" Error 2>/dev/null || cat "$W/dl.json")
  [ -n "$dir" ] || die "download Go module $1 ($err)" \
    "check that the Go module proxy ($(go env GOPROXY)) is reachable, or install pulumi v$PULUMI_VER yourself and rerun"
  rm -rf "$2"; mkdir -p "$(dirname "$2")"; cp -r "$dir" "$2"; chmod -R u+w "$2"
}

step "download pulumi v$PULUMI_VER sources from the Go module proxy"
P=$W/pulumi
dl "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VER" "$P/pkg"
dl "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VER" "$P/sdk"
done_step

LD="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VER"
step "build the pulumi CLI (a cold machine takes several minutes)"
# pkg/go.mod replaces sdk/v3 with ../sdk: the sibling layout above satisfies it.
(cd "$P/pkg" && go build -trimpath -tags osusergo,grpcnotrace -ldflags "$LD" -o "$OUT/pulumi" ./cmd/pulumi) >&2 ||
  die "build the pulumi CLI" "read the Go error above; or install pulumi v$PULUMI_VER yourself and rerun"
done_step

step "build pulumi-language-python (toolchain/language-host)"
cp -r "$here/language-host" "$W/language-host"
(cd "$W/language-host" && go build -trimpath -ldflags "-s -w -X main.version=$PULUMI_VER" -o "$OUT/pulumi-language-python" .) >&2 ||
  die "build the language host" "read the Go error above"
# The host and the dynamic-provider plugin find these scripts next to their own executable.
install -m 0755 "$P/sdk/python/cmd/pulumi-language-python-exec" "$P/sdk/python/dist/pulumi-resource-pulumi-python" "$OUT/"
done_step

"$OUT/pulumi" version >/dev/null || die "run the built pulumi" "delete $CACHE_ROOT and rerun"
touch "$OUT/.complete"
rm -rf "$PREFIX"
mv "$OUT" "$PREFIX"
log "pulumi v$PULUMI_VER built into $PREFIX"
echo "$PREFIX"
