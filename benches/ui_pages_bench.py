#!/usr/bin/env python3
"""The workload of benches/ui-pages.sh: 50,000 tags in big/app and 60 in small/app (a page is
50), each its own manifest over shared blobs, pushed over HTTP 8 connections at a time; then each tags page served for
10 s at 8 connections by wrk, and the first page of big/app saved and served by nginx."""
import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import subprocess
import sys
import threading

BASE = sys.argv[1]
WORK = sys.argv[2]
HOST = BASE.split("//")[1]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
local = threading.local()


def connection():
    if not hasattr(local, "conn"):
        local.conn = http.client.HTTPConnection(HOST, timeout=60)
    return local.conn


def request(method, path, body=b"", headers=None):
    try:
        conn = connection()
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
    except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
        # The server closes connections idle for long: open another and ask again.
        local.conn = http.client.HTTPConnection(HOST, timeout=60)
        conn = local.conn
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
    data = response.read()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
    return data


def push_blob(repository, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    request("POST", f"/v2/{repository}/blobs/uploads/?digest={digest}", data,
            {"Content-Type": "application/octet-stream"})
    return {"digest": digest, "size": len(data)}


def manifest_for(repository):
    config = push_blob(repository, json.dumps({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": []}}).encode())
    layer = push_blob(repository, os.urandom(64 * 1024))
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}]}).encode()


def tag_all(repository, count):
    """Each tag its own manifest (an annotation tells them apart), so no page shares lookups."""
    manifest = json.loads(manifest_for(repository))
    def put(i):
        manifest_i = dict(manifest, annotations={"tag": f"t{i:05}"})
        body = json.dumps(manifest_i).encode()
        request("PUT", f"/v2/{repository}/manifests/t{i:05}", body, {"Content-Type": OCI_MANIFEST})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(count)))


def wrk(url):
    out = subprocess.run(["wrk", "-t2", "-c8", "-d10s", "--latency", url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)
    return rate, p50, p99


def tagged(repository, count):
    """Whether an earlier run (same WORKDIR) tagged the repository already."""
    try:
        tags = json.loads(request("GET", f"/v2/{repository}/tags/list?n=1&last=t{count - 2:05}"))
        return tags.get("tags") == [f"t{count - 1:05}"]
    except RuntimeError:
        return False


for repository, count in [("small/app", 60), ("big/app", 50_000)]:
    if not tagged(repository, count):
        tag_all(repository, count)
page = request("GET", "/ui/r/big/app")
with open(os.path.join(WORK, "www/ui/r/big/app.html"), "wb") as f:
    f.write(page)
print(f"{'page':<48} {'req/s':>8} {'p50':>9} {'p99':>9}")
for label, url in [
    ("small/app (60 tags), newest first", f"{BASE}/ui/r/small/app"),
    ("big/app (50,000 tags), newest first", f"{BASE}/ui/r/big/app"),
    ("big/app, oldest first", f"{BASE}/ui/r/big/app?sort=published"),
    ("big/app, by name", f"{BASE}/ui/r/big/app?sort=name"),
    ("big/app, by name descending", f"{BASE}/ui/r/big/app?sort=-name"),
    ("big/app, page 2 by name", f"{BASE}/ui/r/big/app?sort=name&after=0.t00049"),
    ("big/app, filter contains=4999", f"{BASE}/ui/r/big/app?contains=4999"),
    ("repositories (/ui/)", f"{BASE}/ui/"),
    ("nginx: the big/app page as a file", "http://127.0.0.1:5392/ui/r/big/app.html"),
]:
    rate, p50, p99 = wrk(url)
    print(f"{label:<48} {rate:>8.0f} {p50:>9} {p99:>9}", flush=True)
