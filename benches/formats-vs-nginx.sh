#!/usr/bin/env bash
# The documents Maven, NuGet and Terraform clients read most, served by this registry and by
# nginx from files holding the same bytes, in one run: maven-metadata.xml of an artifact with
# 1,000 versions, a NuGet registration index and one of its pages for a package with 1,000
# versions, the NuGet flat-container versions list, and a Terraform versions list of 1,000
# versions (wrk, 2 threads, 32 connections, 10 s each). Prints requests per second, the server's
# CPU time per request (from /proc), and ours as a share of nginx's. Not a test.
#
#   benches/formats-vs-nginx.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d /tmp/formats-nginx.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)

for tool in nginx wrk curl; do
  command -v "$tool" >/dev/null || {
    echo "installing benchmark tools" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk curl >/dev/null
    break
  }
done
cargo build --release --bin registry -q

ours=127.0.0.1:5310
nginx_at=127.0.0.1:5311
rm -rf "$work/ours" "$work/www"
mkdir -p "$work/www" "$work/nginx"
REGISTRY_LOG=warn target/release/registry serve --listen "$ours" --data-dir "$work/ours" > "$work/ours.log" 2>&1 &
ours_pid=$!
trap 'kill $ours_pid 2>/dev/null || true; [ -f "$work/nginx/nginx.pid" ] && kill "$(cat "$work/nginx/nginx.pid")" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://$ours/v2/" && break
  sleep 0.1
done

# 1,000 versions of each, published through the APIs (Python: one connection, many requests).
python3 - "$ours" <<'PY'
import http.client, io, sys, tarfile, zipfile
host = sys.argv[1]
conn = http.client.HTTPConnection(host, timeout=60)
def put(path, body, headers=None):
    conn.request("PUT", path, body=body, headers=headers or {})
    response = conn.getresponse()
    response.read()
    assert response.status == 201, (path, response.status)
for i in range(1000):
    version = f"1.{i // 100}.{i % 100}"
    pom = (f"<project><modelVersion>4.0.0</modelVersion><groupId>com.example</groupId>"
           f"<artifactId>hello</artifactId><version>{version}</version></project>").encode()
    put(f"/maven/mvnbench/com/example/hello/{version}/hello-{version}.pom", pom)
    nuspec = (f"<package><metadata><id>Bench.Pkg</id><version>{version}</version><authors>Ada</authors>"
              f"<description>A package.</description><dependencies><group targetFramework=\"net6.0\">"
              f"<dependency id=\"Other.Lib\" version=\"[1.0.0, )\" /></group></dependencies></metadata></package>")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("Bench.Pkg.nuspec", nuspec)
        z.writestr("lib/net6.0/Bench.dll", b"MZ" * 512)
    put("/nuget/nubench/api/v2/package", buffer.getvalue(), {"Content-Type": "application/octet-stream"})
    module = io.BytesIO()
    with tarfile.open(fileobj=module, mode="w:gz") as t:
        data = b'output "v" { value = "%s" }\n' % version.encode()
        info = tarfile.TarInfo("main.tf")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    put(f"/terraform/modules/v1/tfbench/hello/local/{version}/file", module.getvalue())
PY

maven=/maven/mvnbench/com/example/hello/maven-metadata.xml
registration=/nuget/nubench/v3/registration-semver2/bench.pkg/index.json
flat=/nuget/nubench/v3/flatcontainer/bench.pkg/index.json
versions=/terraform/modules/v1/tfbench/hello/local/versions
page=$(curl -s "http://$ours$registration" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["@id"].split("'"$ours"'",1)[1])')
for path in "$maven" "$registration" "$page" "$flat" "$versions"; do
  mkdir -p "$work/www$(dirname "$path")"
  curl -s -f "http://$ours$path" -o "$work/www$path"
done
# nginx serves them with the absolute URLs our answers hold (they name our address).
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
    location /maven/ { default_type application/xml; }
    location / { default_type application/json; }
  }
}
CONF
nginx -c "$work/nginx/nginx.conf"
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://$nginx_at$maven" && break
  sleep 0.1
done

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; nginx $(nginx -v 2>&1 | sed 's/.*\///'); work dir $work"
compare() {
  local label=$1 path=$2 a b before after requests size
  size=$(stat -c %s "$work/www$path")
  before=$(ticks $ours_pid)
  out=$(wrk -t2 -c32 -d10s "http://$ours$path")
  after=$(ticks $ours_pid)
  a=$(echo "$out" | sed -n 's/^Requests\/sec: *//p')
  requests=$(echo "$out" | sed -n 's/^ *\([0-9]*\) requests in.*/\1/p')
  b=$(wrk -t2 -c32 -d10s "http://$nginx_at$path" | sed -n 's/^Requests\/sec: *//p')
  printf '%-44s %8d B  ours %8.0f req/s (%6.1f µs CPU/req)  nginx %8.0f req/s  ours/nginx %5.1f%%\n' \
    "$label" "$size" "$a" "$(echo "($after - $before) * 1000000 / $hz / $requests" | bc -l)" "$b" "$(echo "100 * $a / $b" | bc -l)"
}
compare "maven-metadata.xml, 1,000 versions" "$maven"
compare "NuGet registration index, 1,000 versions" "$registration"
compare "NuGet registration page (64 versions)" "$page"
compare "NuGet flat container versions, 1,000" "$flat"
compare "Terraform versions list, 1,000 versions" "$versions"
