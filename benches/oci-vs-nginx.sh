#!/usr/bin/env bash
# The ceiling for small answers: this registry's manifest GET (by tag and by digest) and blob
# HEAD side by side with nginx serving the same bytes from files on the same loopback, in one
# run (wrk, 2 threads, 32 connections, 10 s each; hey for HEAD, which wrk cannot parse).
# Prints each figure and ours as a share of nginx's. Not a test.
#
#   benches/oci-vs-nginx.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/oci-nginx.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)

for tool in nginx wrk hey curl; do
  command -v "$tool" >/dev/null || {
    echo "installing benchmark tools" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk hey curl >/dev/null
    break
  }
done
cargo build --release --bin registry -q

ours=127.0.0.1:5300
nginx_at=127.0.0.1:5301
rm -rf "$work/ours" "$work/www"
mkdir -p "$work/www" "$work/nginx"
REGISTRY_LOG=warn target/release/registry serve --listen "$ours" --data-dir "$work/ours" > "$work/ours.log" 2>&1 &
ours_pid=$!
trap 'kill $ours_pid 2>/dev/null || true; [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://$ours/v2/" && break
  sleep 0.1
done

# A small image: a 1 KiB layer, an empty config, a 0.4 KB manifest.
layer="$work/layer"
head -c 1024 /dev/urandom > "$layer"
layer_digest="sha256:$(sha256sum "$layer" | cut -d' ' -f1)"
config_digest="sha256:$(printf '{}' | sha256sum | cut -d' ' -f1)"
push_blob() {
  local location
  location=$(curl -s -D - -o /dev/null -X POST "http://$ours/v2/bench/small/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case "$location" in http*) ;; *) location="http://$ours$location" ;; esac
  curl -s -f -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" "$location&digest=$2" ||
    curl -s -f -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" "$location?digest=$2"
}
printf '{}' > "$work/config"
push_blob "$work/config" "$config_digest"
push_blob "$layer" "$layer_digest"
manifest=$(printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":1024}]}' "$config_digest" "$layer_digest")
printf '%s' "$manifest" > "$work/manifest"
manifest_digest="sha256:$(sha256sum "$work/manifest" | cut -d' ' -f1)"
curl -s -f -o /dev/null -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary "@$work/manifest" "http://$ours/v2/bench/small/manifests/v1"

# nginx serves the same bytes at the same paths, with the same content type.
mkdir -p "$work/www/v2/bench/small/manifests" "$work/www/v2/bench/small/blobs"
cp "$work/manifest" "$work/www/v2/bench/small/manifests/v1"
cp "$work/manifest" "$work/www/v2/bench/small/manifests/$manifest_digest"
cp "$layer" "$work/www/v2/bench/small/blobs/$layer_digest"
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log error;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server {
    listen $nginx_at;
    root $work/www;
    location /v2/bench/small/manifests/ { default_type application/vnd.oci.image.manifest.v1+json; }
    location /v2/bench/small/blobs/ { default_type application/octet-stream; }
  }
}
CONF
nginx -c "$work/nginx/nginx.conf"
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://$nginx_at/v2/bench/small/manifests/v1" && break
  sleep 0.1
done

cat > "$work/get.lua" <<'LUA'
wrk.method = "GET"
wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json"
LUA
rate() {
  if [ "$2" = HEAD ]; then
    hey -z 10s -c 32 -m HEAD "$1" | sed -n 's/^ *Requests\/sec: *//p'
  else
    wrk -t2 -c32 -d10s -s "$2" "$1" | sed -n 's/^Requests\/sec: *//p'
  fi
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; nginx $(nginx -v 2>&1 | sed 's/.*\///'); work dir $work"
compare() {
  local label=$1 path=$2 script=$3 a b
  a=$(rate "http://$ours$path" "$script")
  b=$(rate "http://$nginx_at$path" "$script")
  printf '%-34s ours %10.0f req/s   nginx %10.0f req/s   ours/nginx %5.1f%%\n' "$label" "$a" "$b" "$(echo "100 * $a / $b" | bc -l)"
}
compare "manifest GET by tag" "/v2/bench/small/manifests/v1" "$work/get.lua"
compare "manifest GET by digest" "/v2/bench/small/manifests/$manifest_digest" "$work/get.lua"
compare "blob HEAD (1 KiB)" "/v2/bench/small/blobs/$layer_digest" HEAD
