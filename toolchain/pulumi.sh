#!/usr/bin/env bash
# Provides the pinned Pulumi CLI, Python language host and provider plugins.
# Uses a matching `pulumi` on PATH when there is one; otherwise builds all of them from
# the Go module proxy into a versioned cache folder. A finished build is published by an
# atomic rename, so an interrupted build never leaves a cache that later runs trust.
# Prints the folder to put on PATH as its last line.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=toolchain/versions.sh
. "$here/versions.sh"
. "$here/lib.sh"

CACHE_ROOT=${GHR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ghr-toolchain}
KEY="pulumi-$PULUMI_VER-docker-$DOCKER_PROVIDER_VER-command-$COMMAND_PROVIDER_VER"
PREFIX=$CACHE_ROOT/$KEY
export PULUMI_HOME=${PULUMI_HOME:-$CACHE_ROOT/pulumi-home}
export PULUMI_SKIP_UPDATE_CHECK=true PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true

plugins_ok() {
  local bin=$1
  PATH="$bin:$PATH" pulumi plugin ls 2>/dev/null | awk '{print $1" "$3}' | grep -q "^docker $DOCKER_PROVIDER_VER$" &&
    PATH="$bin:$PATH" pulumi plugin ls 2>/dev/null | awk '{print $1" "$3}' | grep -q "^command $COMMAND_PROVIDER_VER$"
}

install_plugins() {
  local bin=$1
  plugins_ok "$bin" && return 0
  step "install provider plugins into $PULUMI_HOME"
  PATH="$bin:$PATH" pulumi plugin install resource docker "$DOCKER_PROVIDER_VER" --file "$bin/plugins/pulumi-resource-docker" >&2 ||
    die "plugin install docker" "rerun; if it persists delete $PREFIX"
  PATH="$bin:$PATH" pulumi plugin install resource command "$COMMAND_PROVIDER_VER" --file "$bin/plugins/pulumi-resource-command" >&2 ||
    die "plugin install command" "rerun; if it persists delete $PREFIX"
  done_step
}

# 1. A pulumi of the pinned version already on PATH (a connected machine's vendor install).
if command -v pulumi >/dev/null 2>&1 && [ "$(pulumi version 2>/dev/null)" = "v$PULUMI_VER" ] &&
   command -v pulumi-language-python >/dev/null 2>&1; then
  sys_bin=$(dirname "$(command -v pulumi)")
  if plugins_ok "$sys_bin"; then echo "$sys_bin"; exit 0; fi
  if [ -x "$PREFIX/plugins/pulumi-resource-docker" ]; then install_plugins "$PREFIX"; echo "$sys_bin"; exit 0; fi
  log "pulumi v$PULUMI_VER is on PATH but the docker/command plugins are not installed; building them"
fi

# 2. A finished build in the cache.
if [ -f "$PREFIX/.complete" ]; then
  install_plugins "$PREFIX"
  echo "$PREFIX"
  exit 0
fi

# 3. Build from the Go module proxy.
command -v go >/dev/null || die "find go" "install Go >= 1.24 (apt-get install golang, or go.dev/dl), or install pulumi v$PULUMI_VER yourself and rerun"
mkdir -p "$CACHE_ROOT"
W=$(mktemp -d "$CACHE_ROOT/.build-XXXXXX")
trap 'rm -rf "$W"' EXIT
OUT=$W/out; mkdir -p "$OUT/plugins"
export CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
cd "$W"

probe_proxy() {
  go mod download -json "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VER" >"$W/probe.json" 2>&1 ||
    die "reach the Go module proxy ($(go env GOPROXY))" "install pulumi v$PULUMI_VER and its plugins yourself (https://www.pulumi.com/docs/install/) and rerun"
}

# go mod download a module@version and copy its tree to $2 (writable); sets INFO to its .info file
dl() {
  go mod download -json "$1" >"$W/dl.json" || { cat "$W/dl.json" >&2; die "download Go module $1" "check GOPROXY=$(go env GOPROXY) is reachable, then rerun"; }
  local dir
  dir=$(jget "$W/dl.json" Dir)
  INFO=$(jget "$W/dl.json" Info)
  rm -rf "$2"; mkdir -p "$(dirname "$2")"; cp -r "$dir" "$2"; chmod -R u+w "$2"
}
jget() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

step "probe the Go module proxy"; probe_proxy; done_step

# CLI + language host, laid out as in the upstream repo so relative replaces resolve.
step "download pulumi v$PULUMI_VER sources"
P=$W/pulumi
dl "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VER" "$P/pkg"
PULUMI_REV=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["Origin"]["Hash"])' "$INFO")
dl "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VER" "$P/sdk"
PSEUDO=$(go list -m -json "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3@$PULUMI_REV" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Version"])')
dl "github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3@$PSEUDO" "$P/sdk/python/cmd/pulumi-language-python"
done_step

LD="-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VER"
step "build pulumi CLI (slow on a cold machine)"
(cd "$P/pkg" && go build -trimpath -tags osusergo,grpcnotrace -ldflags "$LD" -o "$OUT/pulumi" ./cmd/pulumi) ||
  die "build the pulumi CLI" "see the Go error above; or install pulumi v$PULUMI_VER yourself and rerun"
done_step
step "build pulumi-language-python"
(cd "$P/sdk/python/cmd/pulumi-language-python" && go build -trimpath -tags osusergo,grpcnotrace -ldflags "$LD" -o "$OUT/pulumi-language-python" .) ||
  die "build pulumi-language-python" "see the Go error above"
install -m 0755 "$P/sdk/python/cmd/pulumi-language-python-exec" "$P/sdk/python/dist/pulumi-resource-pulumi-python" "$OUT/"
done_step

step "build pulumi-resource-command v$COMMAND_PROVIDER_VER"
GOBIN=$OUT/plugins go install -trimpath \
  -ldflags "-s -w -X github.com/pulumi/pulumi-command/provider/pkg/version.Version=v$COMMAND_PROVIDER_VER" \
  "github.com/pulumi/pulumi-command/provider/cmd/pulumi-resource-command@$COMMAND_PROVIDER_REV" ||
  die "build pulumi-resource-command" "see the Go error above"
done_step

step "build pulumi-resource-docker v$DOCKER_PROVIDER_VER (slow on a cold machine)"
"$here/build-docker-provider.sh" "$W/docker" "$OUT/plugins/pulumi-resource-docker" ||
  die "build pulumi-resource-docker" "see the error above"
done_step

touch "$OUT/.complete"
rm -rf "$PREFIX"
mv "$OUT" "$PREFIX"
install_plugins "$PREFIX"
echo "$PREFIX"
