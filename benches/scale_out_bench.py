#!/usr/bin/env python3
"""The workload of benches/scale-out.sh (which starts the servers and lists them in
WORKDIR/servers as name=host,pid).

Per setup: a 64 MiB and a 1 GiB blob pushed monolithically (curl streams the file) and pulled
(to /dev/null), each server's peak RSS sampled during them; then manifest GET by tag at 32
connections for 10 s with wrk (split over the instances for three).
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

WORK = sys.argv[1]
SERVERS = {}
for line in open(os.path.join(WORK, "servers")):
    name, rest = line.strip().split("=")
    host, pid = rest.split(",")
    SERVERS[name] = (host, int(pid))
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Peak(threading.Thread):
    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.peak, self.done = pids, {p: 0 for p in pids}, False

    def run(self):
        while not self.done:
            for p in self.pids:
                self.peak[p] = max(self.peak[p], rss_kib(p))
            time.sleep(0.02)


def make_file(size):
    path = os.path.join(WORK, f"blob-{size}")
    digest = hashlib.sha256()
    if not os.path.exists(path):
        block = os.urandom(1 << 20)
        with open(path, "wb") as f:
            for i in range(size >> 20):
                chunk = block[i % 256:] + block[: i % 256]
                f.write(chunk)
    with open(path, "rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    return path, "sha256:" + digest.hexdigest()


def curl(*args):
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total} %{redirect_url}", *args],
                         capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), float(out[1])


def push(host, repo, path, digest):
    req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(req) as r:
        location = r.headers["Location"]
    if location.startswith("/"):
        location = f"http://{host}{location}"
    sep = "&" if "?" in location else "?"
    code, seconds = curl("-X", "PUT", "-H", "Content-Type: application/octet-stream",
                         "-T", path, f"{location}{sep}digest={digest}")
    assert code == 201, code
    return seconds


def pull(host, repo, digest):
    code, seconds = curl("-L", f"http://{host}/v2/{repo}/blobs/{digest}")
    assert code == 200, code
    return seconds


def small_image(host, repo):
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(1024)
    digests = []
    for data in (config, layer):
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        # POST, then PUT with the bytes: distribution 2.8 has no single-request upload.
        with urllib.request.urlopen(urllib.request.Request(f"http://{host}/v2/{repo}/blobs/uploads/",
                                                           method="POST")) as r:
            location = r.headers["Location"]
        if location.startswith("/"):
            location = f"http://{host}{location}"
        sep = "&" if "?" in location else "?"
        req = urllib.request.Request(f"{location}{sep}digest={d}", data=data, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        urllib.request.urlopen(req).read()
        digests.append((d, len(data)))
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digests[0][0], "size": digests[0][1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digests[1][0], "size": digests[1][1]}],
    }).encode()
    req = urllib.request.Request(f"http://{host}/v2/{repo}/manifests/latest", data=manifest, method="PUT",
                                 headers={"Content-Type": OCI_MANIFEST})
    urllib.request.urlopen(req).read()


def wrk_many(hosts, path, connections=32, seconds=10):
    script = os.path.join(WORK, "accept.lua")
    with open(script, "w") as f:
        f.write(f'wrk.headers["Accept"] = "{OCI_MANIFEST}"\n')
    per = max(1, connections // len(hosts))
    procs = [subprocess.Popen(["wrk", "-t1", f"-c{per}", f"-d{seconds}s", "-s", script, f"http://{h}{path}"],
                              stdout=subprocess.PIPE, text=True) for h in hosts]
    total = 0.0
    for p in procs:
        out = p.communicate()[0]
        total += float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return total


def setup(label, push_to, pull_from, all_hosts, pids):
    small, small_digest = make_file(64 << 20)
    big, big_digest = make_file(1 << 30)
    repo = "bench/" + re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    rss = {}
    for name, (path, digest) in (("64MiB", (small, small_digest)), ("1GiB", (big, big_digest))):
        sampler = Peak(pids)
        sampler.start()
        up = push(push_to, repo, path, digest)
        down = pull(pull_from, repo, digest)
        sampler.done = True
        sampler.join()
        rss[name] = max(sampler.peak.values()) // 1024
        if name == "1GiB":
            print(f"{label:24} push 1 GiB {up:6.1f} s ({1024 / up:6.0f} MiB/s)   pull {down:6.1f} s ({1024 / down:6.0f} MiB/s)")
    print(f"{label:24} peak RSS of a server: {rss['64MiB']} MiB during 64 MiB, {rss['1GiB']} MiB during 1 GiB")
    small_image(push_to, repo)
    rps = wrk_many(all_hosts, f"/v2/{repo}/manifests/latest")
    print(f"{label:24} manifest GET, 32 connections: {rps:8.0f} req/s")


def main():
    print(f"load: {open('/proc/loadavg').read().split()[:3]}")
    fs = SERVERS["fs"]
    setup("fs, 1 instance", fs[0], fs[0], [fs[0]], [fs[1]])
    peer = SERVERS["distribution"]
    setup("distribution 2.8.2 (fs)", peer[0], peer[0], [peer[0]], [peer[1]])
    a, b, c = SERVERS["s3-a"], SERVERS["s3-b"], SERVERS["s3-c"]
    setup("S3, 1 instance", a[0], a[0], [a[0]], [a[1]])
    setup("S3, 3 instances", a[0], c[0], [a[0], b[0], c[0]], [a[1], b[1], c[1]])


main()
