#!/usr/bin/env bash
# Scale-out benchmark (not a test): a 1 GiB blob pushed and pulled, and manifest GETs at 32
# connections, through one instance and through three, on the filesystem (SQLite) and on the
# S3-compatible test server (PostgreSQL), beside the CNCF distribution registry (Debian's
# docker-registry 2.8.2) on the filesystem. Prints seconds, MiB/s, requests/s and each
# server's peak RSS during a 64 MiB and a 1 GiB transfer (flat memory: the two close).
#
#   benches/scale-out.sh [WORKDIR]
#
# The S3 server is moto (scripts/ensure-s3), written in Python: S3 figures measure it as much
# as this registry. Three instances share the machine's 2 cores with the one client.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/scale-bench.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)

for tool in docker-registry wrk curl; do
  command -v "$tool" >/dev/null || {
    echo "installing benchmark tools" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry wrk curl >/dev/null
    break
  }
done
scripts/ensure-postgres
scripts/ensure-s3
cargo build --release --bin registry -q

schema="bench_$(date +%s)"
psql "postgres://postgres@127.0.0.1:5432/test" -qc "CREATE SCHEMA $schema"
database="postgres://postgres@127.0.0.1:5432/test?options=-c%20search_path%3D$schema"
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  psql "postgres://postgres@127.0.0.1:5432/test" -qc "DROP SCHEMA $schema CASCADE" || true
}
trap cleanup EXIT

cat > "$work/s3.toml" <<TOML
database_url = "$database"
[blob_store]
url = "s3://registry-test/$schema"
[blob_store.options]
aws_endpoint = "http://127.0.0.1:9000"
aws_region = "us-east-1"
aws_access_key_id = "test"
aws_secret_access_key = "test"
aws_allow_http = "true"
TOML
mkdir -p "$work/peer"
cat > "$work/peer/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/peer/data
http:
  addr: 127.0.0.1:5209
YAML

start() { # name port args...
  local name=$1 port=$2
  shift 2
  REGISTRY_LOG=warn target/release/registry serve --listen "127.0.0.1:$port" "$@" > "$work/$name.log" 2>&1 &
  pids+=($!)
  echo "$name=127.0.0.1:$port,$!" >> "$work/servers"
}
rm -f "$work/servers"
start fs 5201 --data-dir "$work/fs"
start s3-a 5202 --data-dir "$work/s3-a" --config "$work/s3.toml"
start s3-b 5203 --data-dir "$work/s3-b" --config "$work/s3.toml"
start s3-c 5204 --data-dir "$work/s3-c" --config "$work/s3.toml"
docker-registry serve "$work/peer/config.yml" > "$work/peer.log" 2>&1 &
pids+=($!)
echo "distribution=127.0.0.1:5209,$!" >> "$work/servers"
for port in 5201 5202 5203 5204 5209; do
  for _ in $(seq 1 100); do
    curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break
    sleep 0.1
  done
done
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; work dir $work"
python3 benches/scale_out_bench.py "$work"
