#!/usr/bin/env bash
# Proxy and virtual repositories against hosted ones, and against Verdaccio proxying the same
# upstream. Not a test. Starts an upstream registry, a registry that proxies it (hosted, proxy
# and virtual repositories for npm and PyPI) and Verdaccio 6.8.0 with the upstream as its uplink,
# then measures (hey, 32 connections, 10 s each): a cached packument of 1,000 versions, a cached
# tarball, and a cached simple page of 500 files, each read from a hosted repository and through
# a virtual repository whose proxy member serves it; and `npm install` of 50 packages through
# our proxy and through Verdaccio, cold (both caches empty) and warm (the proxy's cache full,
# npm's empty), median of 3.
#
#   benches/proxy-vs-hosted.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/proxy-bench.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)

command -v hey >/dev/null || {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey >/dev/null
}
cargo build --release --bin registry -q
if [ ! -x "$work/verdaccio/node_modules/.bin/verdaccio" ]; then
  mkdir -p "$work/verdaccio"
  (cd "$work/verdaccio" && npm init -y >/dev/null &&
   node -e 'const p=require("./package.json"); p.overrides={"node-fetch":"2.7.0"}; require("fs").writeFileSync("package.json", JSON.stringify(p))' &&
   npm install -q --no-audit --no-fund verdaccio@6.8.0 >/dev/null)
fi

upstream=127.0.0.1:5400
proxy=127.0.0.1:5401
verdaccio=127.0.0.1:5402
rm -rf "$work/upstream" "$work/proxy" "$work/verdaccio-data"
mkdir -p "$work/verdaccio-data"
cat > "$work/proxy.toml" <<TOML
[[package_repositories]]
name = "corp"
format = "npm"
[[package_repositories]]
name = "npmjs"
format = "npm"
kind = "proxy"
upstream = { url = "http://$upstream/npm/public" }
[[package_repositories]]
name = "all"
format = "npm"
kind = "virtual"
members = ["corp", "npmjs"]
[[package_repositories]]
name = "pcorp"
format = "pypi"
[[package_repositories]]
name = "pproxy"
format = "pypi"
kind = "proxy"
upstream = { url = "http://$upstream/pypi/ppublic" }
[[package_repositories]]
name = "pall"
format = "pypi"
kind = "virtual"
members = ["pcorp", "pproxy"]
TOML
cat > "$work/verdaccio-data/config.yaml" <<YAML
storage: $work/verdaccio-data/storage
auth:
  htpasswd: { file: $work/verdaccio-data/htpasswd, max_users: 100 }
uplinks:
  up: { url: "http://$upstream/npm/public/", maxage: 5m, timeout: 30s }
packages:
  '**': { access: \$all, proxy: up }
listen: $verdaccio
log: { type: stdout, format: pretty, level: error }
userRateLimit: { windowMs: 1000, max: 100000000 }
web: { rateLimit: { windowMs: 1000, max: 100000000 } }
YAML

REGISTRY_LOG=warn target/release/registry serve --listen "$upstream" --data-dir "$work/upstream" > "$work/upstream.log" 2>&1 &
upstream_pid=$!
REGISTRY_LOG=warn target/release/registry serve --listen "$proxy" --data-dir "$work/proxy" --config "$work/proxy.toml" > "$work/proxy.log" 2>&1 &
proxy_pid=$!
trap 'kill $upstream_pid $proxy_pid 2>/dev/null || true' EXIT
for url in "http://$upstream/v2/" "http://$proxy/v2/"; do
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "$url" && break
    sleep 0.1
  done
done

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; work dir $work"
# Verdaccio is started (and restarted with an empty storage, for cold runs) by the driver.
python3 benches/proxy_bench.py "$upstream" "$proxy" "$verdaccio" "$work"
