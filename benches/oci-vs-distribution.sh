#!/usr/bin/env bash
# Benchmarks this registry against the CNCF distribution registry (Debian `docker-registry`
# 2.8.2) on loopback with the same workload; prints each figure and the ratio. Not a test.
#
#   benches/oci-vs-distribution.sh [WORKDIR]
#
# Both servers store on the same disk (WORKDIR, default a fresh /tmp directory). The peer runs
# with its default GOGC and log level "error"; ours with filesystem blobs and SQLite metadata.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/oci-bench.XXXXXX)}
mkdir -p "$work"

for tool in docker-registry wrk hey curl; do
  command -v "$tool" >/dev/null || {
    echo "installing benchmark tools" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry wrk hey curl >/dev/null
    break
  }
done
cargo build --release --bin registry -q

ours=127.0.0.1:5100
peer=127.0.0.1:5101
rm -rf "$work/ours" "$work/peer"
mkdir -p "$work/peer"
cat > "$work/peer/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $work/peer/data
  delete:
    enabled: true
http:
  addr: $peer
YAML

REGISTRY_LOG=warn target/release/registry serve --listen "$ours" --data-dir "$work/ours" > "$work/ours.log" 2>&1 &
ours_pid=$!
docker-registry serve "$work/peer/config.yml" > "$work/peer.log" 2>&1 &
peer_pid=$!
trap 'kill $ours_pid $peer_pid 2>/dev/null || true' EXIT
for host in $ours $peer; do
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://$host/v2/" && break
    sleep 0.1
  done
done

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; work dir $work"
python3 benches/oci_peer.py "$ours" "$ours_pid" "$peer" "$peer_pid" "$work"
