#!/bin/bash
# Entry point of the ghr-cache image: `ghr-cache apt|registry|exporter` (components/cache.py).
#
# apt, registry: run the server as its own unprivileged user, and next to it a loop that every
# GHR_PROBE_INTERVAL seconds checks the server answers (health file) and every GHR_EVICT_INTERVAL
# seconds bounds the storage to GHR_CACHE_MAX_BYTES: above it, the least recently used files (by
# access time, then modification time) are deleted until the storage is under 90 % of the bound.
# Health, counters and sizes go to the stats volume (/var/lib/ghr-stats), which the exporter reads.
set -euo pipefail

role=${1:?usage: ghr-cache apt|registry|exporter}
stats=/var/lib/ghr-stats
max_bytes=${GHR_CACHE_MAX_BYTES:-10737418240}
probe_interval=${GHR_PROBE_INTERVAL:-5}
evict_interval=${GHR_EVICT_INTERVAL:-60}

log() { printf 'ts=%s role=%s %s\n' "$(date -u +%FT%TZ)" "$role" "$*" >&2; }

# write FILE CONTENT: atomically (the exporter never reads half a file)
write() { printf '%s\n' "$2" > "$1.tmp" && mv -f "$1.tmp" "$1"; }

# evict DIR: delete least recently used files until DIR is under 90 % of max_bytes; record sizes
evict() {
  local dir=$1 name=$2 used target freed=0 line size path
  used=$(du -sb "$dir" | cut -f1)
  if (( used > max_bytes )); then
    target=$(( max_bytes * 9 / 10 ))
    while IFS= read -r line; do
      (( used - freed <= target )) && break
      size=${line#* }; size=${size%% *}; path=${line#* * }
      rm -f -- "$path" && freed=$(( freed + size ))
    done < <(find "$dir" -type f -printf '%A@ %s %p\n' | sort -n)
    find "$dir" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    local total=0
    [[ -s $stats/$name.evicted ]] && total=$(<"$stats/$name.evicted")
    write "$stats/$name.evicted" "$(( total + freed ))"
    log "event=evicted bytes=$freed used_before=$used max=$max_bytes"
    used=$(( used - freed ))
  fi
  write "$stats/$name.size" "$used $max_bytes"
}

# probe NAME URL: the server answers HTTP at URL -> "ok <time>", else "fail <time>"
probe() {
  if python3 - "$2" <<'PY' 2>/dev/null
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=3).read(65536)
except urllib.error.HTTPError:
    pass  # any HTTP answer means the server is up
PY
  then write "$stats/$1.health" "ok $(date +%s)"; else write "$stats/$1.health" "fail $(date +%s)"; fi
}

supervise() {  # NAME DATA_DIR URL [VARS_URL]: probe and evict while the server (pid $server) runs
  local name=$1 dir=$2 url=$3 vars=${4:-} last_evict=0 now
  while kill -0 "$server" 2>/dev/null; do
    probe "$name" "$url"
    if [[ -n $vars ]]; then
      python3 /usr/local/lib/ghr/exporter.py scan-registry "$dir" "$stats" || true
      python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())' \
        "$vars" > "$stats/$name.vars.tmp" 2>/dev/null && mv -f "$stats/$name.vars.tmp" "$stats/$name.vars.json" || true
    fi
    now=$(date +%s)
    if (( now - last_evict >= evict_interval )); then evict "$dir" "$name"; last_evict=$now; fi
    sleep "$probe_interval"
  done
}

install -d -m 0755 "$stats"
case $role in
  apt)
    install -d -o apt-cacher-ng -g apt-cacher-ng -m 0755 "$stats/apt" /var/cache/apt-cacher-ng /run/apt-cacher-ng
    chown -R apt-cacher-ng:apt-cacher-ng /var/cache/apt-cacher-ng
    setpriv --reuid=apt-cacher-ng --regid=apt-cacher-ng --init-groups \
      /usr/sbin/apt-cacher-ng -c /etc/apt-cacher-ng ForeGround=1 SocketPath=/run/apt-cacher-ng/socket &
    server=$!
    trap 'kill -TERM "$server" 2>/dev/null' TERM INT
    log "event=started max_bytes=$max_bytes"
    supervise apt /var/cache/apt-cacher-ng "http://127.0.0.1:3142/" &
    wait "$server"
    ;;
  registry)
    upstream=${GHR_REGISTRY_UPSTREAM:-https://registry-1.docker.io}
    install -d -o docker-registry -g docker-registry -m 0755 /var/lib/docker-registry
    chown -R docker-registry:docker-registry /var/lib/docker-registry
    # The registry's counters start at 0 with it: so do the stored-blob counts (the seen list stays).
    write "$stats/registry.stored" "0 0"
    [[ -e $stats/registry.seen ]] || python3 /usr/local/lib/ghr/exporter.py scan-registry /var/lib/docker-registry "$stats"
    write "$stats/registry.stored" "0 0"
    # Proxy mode: clients can pull (and only pull); no upstream credentials are ever configured.
    cat > /run/registry.yml <<YAML
version: 0.1
log: {level: info, formatter: text, fields: {service: ghr-cache-registry}}
storage:
  filesystem: {rootdirectory: /var/lib/docker-registry}
  delete: {enabled: true}
  maintenance: {uploadpurging: {enabled: true, age: 24h, interval: 1h, dryrun: false}}
http:
  addr: 0.0.0.0:5000
  debug: {addr: 127.0.0.1:5001}
proxy: {remoteurl: "$upstream"}
YAML
    setpriv --reuid=docker-registry --regid=docker-registry --init-groups \
      /usr/bin/docker-registry serve /run/registry.yml &
    server=$!
    trap 'kill -TERM "$server" 2>/dev/null' TERM INT
    log "event=started upstream=$upstream max_bytes=$max_bytes"
    supervise registry /var/lib/docker-registry "http://127.0.0.1:5000/v2/" "http://127.0.0.1:5001/debug/vars" &
    wait "$server"
    ;;
  exporter)
    exec setpriv --reuid=nobody --regid=nogroup --clear-groups \
      python3 /usr/local/lib/ghr/exporter.py --stats "$stats" --port "${GHR_METRICS_PORT:-9180}" \
        --caches "${GHR_CACHES:-apt,registry}"
    ;;
  *) log "event=usage error=unknown-role"; exit 2 ;;
esac
