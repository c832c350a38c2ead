#!/usr/bin/env bash
# Web UI page benchmark (not a test): the tags page of a 50,000-tag repository against that of
# a 60-tag one (a page shows 50), in every sort order and with a substring filter, on the embedded default
# (SQLite + filesystem), with wrk at 8 connections for 10 s each; nginx serving the same page
# saved as a file is the ceiling. Prints requests/s and latency per page.
#
#   benches/ui-pages.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/ui-bench.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)

for tool in wrk nginx curl; do
  command -v "$tool" >/dev/null || {
    echo "installing benchmark tools" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light curl >/dev/null
    break
  }
done
cargo build --release --bin registry -q

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT

port=5391
target/release/registry serve --listen "127.0.0.1:$port" --data-dir "$work/data" \
  >"$work/registry.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done

mkdir -p "$work/www/ui/r/big"
cat > "$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  types { text/html html; }
  server {
    listen 127.0.0.1:5392;
    root $work/www;
    location / { default_type text/html; }
  }
}
CONF
nginx -c "$work/nginx.conf" &
pids+=($!)

python3 benches/ui_pages_bench.py "http://127.0.0.1:$port" "$work"
