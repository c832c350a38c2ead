#!/usr/bin/env bash
# Benchmarks this registry's npm and PyPI APIs against Verdaccio 6.8.0 and pypiserver on loopback
# with the same workload; prints each figure and the ratio. Not a test.
#
#   benches/packages-vs-peers.sh [WORKDIR]
#
# Installs the peers into WORKDIR (default a fresh /tmp directory): Verdaccio from npm (6.8.0 is
# the newest that runs on Node 20; its audit plugin needs node-fetch pinned), pypiserver from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/packages-bench.XXXXXX)}
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
if [ ! -x "$work/pypiserver/bin/pypi-server" ]; then
  python3 -m venv "$work/pypiserver"
  "$work/pypiserver/bin/pip" install -q pypiserver passlib
fi

ours=127.0.0.1:5200
verdaccio=127.0.0.1:5201
pypiserver=127.0.0.1:5202
rm -rf "$work/ours" "$work/verdaccio-data" "$work/pypi-packages"
mkdir -p "$work/verdaccio-data" "$work/pypi-packages"
cat > "$work/verdaccio-data/config.yaml" <<YAML
storage: $work/verdaccio-data/storage
auth:
  htpasswd: { file: $work/verdaccio-data/htpasswd, max_users: 100 }
uplinks: {}
packages:
  '@*/*': { access: \$all, publish: \$authenticated, unpublish: \$authenticated }
  '**':   { access: \$all, publish: \$authenticated, unpublish: \$authenticated }
listen: $verdaccio
max_body_size: 100mb
log: { type: stdout, format: pretty, level: error }
# Its default rate limits answer load tests with 429.
userRateLimit: { windowMs: 1000, max: 100000000 }
web: { rateLimit: { windowMs: 1000, max: 100000000 } }
YAML
"$work/pypiserver/bin/python" -c "from passlib.apache import HtpasswdFile as H; h=H('$work/htpasswd', new=True); h.set_password('bench', 'benchpass1'); h.save()"

REGISTRY_LOG=warn target/release/registry serve --listen "$ours" --data-dir "$work/ours" > "$work/ours.log" 2>&1 &
ours_pid=$!
"$work/verdaccio/node_modules/.bin/verdaccio" --config "$work/verdaccio-data/config.yaml" > "$work/verdaccio.log" 2>&1 &
verdaccio_pid=$!
"$work/pypiserver/bin/pypi-server" run -i 127.0.0.1 -p "${pypiserver##*:}" -P "$work/htpasswd" -a update \
  --disable-fallback --hash-algo sha256 "$work/pypi-packages" > "$work/pypiserver.log" 2>&1 &
pypi_pid=$!
trap 'kill $ours_pid $verdaccio_pid $pypi_pid 2>/dev/null || true' EXIT
for url in "http://$ours/v2/" "http://$verdaccio/-/ping" "http://$pypiserver/simple/"; do
  for _ in $(seq 1 200); do
    curl -s -o /dev/null "$url" && break
    sleep 0.1
  done
done

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; work dir $work"
echo "verdaccio $("$work/verdaccio/node_modules/.bin/verdaccio" --version), pypiserver $("$work/pypiserver/bin/pip" show pypiserver | sed -n 's/^Version: //p'), node $(node --version)"
python3 benches/packages_peer.py "$ours" "$verdaccio" "$pypiserver" "$work"
