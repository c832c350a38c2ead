#!/usr/bin/env python3
"""OCI workload against two registries side by side; prints each figure and the ratio.

Usage: oci_peer.py OURS_HOST OURS_PID PEER_HOST PEER_PID WORKDIR
(run by benches/oci-vs-distribution.sh, which starts both servers).

Workloads: a 256 MiB blob pushed monolithically and in 16 MiB chunks, and pulled; manifest
GET by tag and blob HEAD at 32 connections for 10 s; the tag list of a 10,000-tag repository;
a catalog page of 100 with 1,000 repositories more.
Each timed transfer runs 5 times and reports the median; the page cache's dirty data is
flushed before each run. Server RSS is sampled throughout.
"""
import hashlib
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

OURS, OURS_PID, PEER, PEER_PID, WORK = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
BIG = 256 << 20
CHUNK = 16 << 20
RUNS = 5
REPOSITORIES = 1000
TAGS = 10_000
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler(threading.Thread):
    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids = pids
        self.peak = {p: 0 for p in pids}
        self.stop = False

    def run(self):
        while not self.stop:
            for p in self.pids:
                self.peak[p] = max(self.peak[p], rss_kib(p))
            time.sleep(0.05)


def curl(*args):
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", *args],
                         capture_output=True, text=True, check=True).stdout
    code, seconds = out.split()
    return int(code), float(seconds)


def request(host, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(host, timeout=120)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def absolute(host, location):
    return location if location.startswith("http") else f"http://{host}{location}"


def with_query(url, query):
    return f"{url}{'&' if '?' in url else '?'}{query}"


def start_upload(host, repo):
    status, headers, _ = request(host, "POST", f"/v2/{repo}/blobs/uploads/")
    assert status == 202, (host, status)
    return absolute(host, headers.get("Location") or headers["location"])


def settle():
    """Flushes every dirty page first, so no run pays for an earlier step's writeback (the peer
    never fsyncs, so its data would otherwise be written back during the next run)."""
    os.sync()
    time.sleep(0.5)


def push_monolithic(host, repo, path, digest):
    settle()
    location = start_upload(host, repo)
    started = time.perf_counter()
    code, _ = curl("-X", "PUT", "-H", "Content-Type: application/octet-stream", "-T", path,
                   with_query(location, f"digest={digest}"))
    assert code == 201, (host, code)
    return time.perf_counter() - started


def push_chunked(host, repo, chunks, digest):
    settle()
    started = time.perf_counter()
    location = start_upload(host, repo)
    offset = 0
    for chunk in chunks:
        size = os.path.getsize(chunk)
        out = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "-D", "-", "-X", "PATCH",
             "-H", "Content-Type: application/octet-stream",
             "-H", f"Content-Range: {offset}-{offset + size - 1}", "-T", chunk, location],
            capture_output=True, text=True, check=True).stdout
        assert " 202 " in out, (host, out)
        location = absolute(host, re.search(r"(?im)^location:\s*(\S+)", out).group(1))
        offset += size
    code, _ = curl("-X", "PUT", with_query(location, f"digest={digest}"))
    assert code == 201, (host, code)
    return time.perf_counter() - started


def pull(host, repo, digest):
    code, seconds = curl(f"http://{host}/v2/{repo}/blobs/{digest}")
    assert code == 200, (host, code)
    return seconds


def put_blob(host, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    location = start_upload(host, repo)
    url = with_query(location, f"digest={digest}")
    status, _, _ = request(host, "PUT", url.split(host, 1)[1], body=data,
                           headers={"Content-Type": "application/octet-stream"})
    assert status == 201, (host, status)
    return digest


def small_image(host, repo):
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = b"small layer " * 12
    config_digest = put_blob(host, repo, config)
    layer_digest = put_blob(host, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": len(layer)}],
    }).encode()
    return manifest, layer_digest


def put_tags(host, repo, manifest, count):
    conn = http.client.HTTPConnection(host, timeout=60)
    for i in range(count):
        conn.request("PUT", f"/v2/{repo}/manifests/tag-{i:05d}", body=manifest,
                     headers={"Content-Type": OCI_MANIFEST})
        response = conn.getresponse()
        response.read()
        assert response.status == 201, (host, response.status)
    conn.close()


def wrk(url, script):
    out = subprocess.run(["wrk", "-t2", "-c32", "-d10s", "-s", script, url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert not non2xx, out
    return rate


def hey_head(url):
    out = subprocess.run(["hey", "-z", "10s", "-c", "32", "-m", "HEAD", url],
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"\[200\]\s+\d+ responses", out), out
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    os.makedirs(WORK, exist_ok=True)
    big = os.path.join(WORK, "big.bin")
    if not os.path.exists(big) or os.path.getsize(big) != BIG:
        with open(big, "wb") as f:
            for _ in range(BIG // (1 << 20)):
                f.write(os.urandom(1 << 20))
    digest = "sha256:" + hashlib.sha256(open(big, "rb").read()).hexdigest()
    chunks = []
    with open(big, "rb") as f:
        for i in range(BIG // CHUNK):
            path = os.path.join(WORK, f"chunk{i:02d}")
            with open(path, "wb") as out:
                out.write(f.read(CHUNK))
            chunks.append(path)

    servers = {"ours": (OURS, OURS_PID), "peer": (PEER, PEER_PID)}
    baseline = {name: rss_kib(pid) for name, (_, pid) in servers.items()}
    sampler = RssSampler([OURS_PID, PEER_PID])
    sampler.start()
    results = []

    def compare(label, unit, measure, higher_is_better=True):
        figures = {}
        for name, (host, pid) in servers.items():
            figures[name] = measure(name, host, pid)
        ratio = figures["ours"] / figures["peer"] if higher_is_better else figures["peer"] / figures["ours"]
        results.append((label, unit, figures["ours"], figures["peer"], ratio))
        print(f"{label:<44} ours {figures['ours']:>10.1f} {unit:<6} peer {figures['peer']:>10.1f} {unit:<6} ratio {ratio:5.2f}x", flush=True)

    mib = BIG / (1 << 20)
    # Interleave A and B runs; medians of RUNS.
    compare("blob push, monolithic (256 MiB)", "MiB/s",
            lambda n, h, p: mib / statistics.median(push_monolithic(h, f"bench/mono{r}", big, digest) for r in range(RUNS)))
    compare("blob push, chunked 16 MiB (256 MiB)", "MiB/s",
            lambda n, h, p: mib / statistics.median(push_chunked(h, f"bench/chunk{r}", chunks, digest) for r in range(RUNS)))
    compare("blob pull (256 MiB)", "MiB/s",
            lambda n, h, p: mib / statistics.median(pull(h, "bench/mono0", digest) for _ in range(RUNS)))
    push_peak = {name: sampler.peak[pid] for name, (_, pid) in servers.items()}

    prepared = {}
    for name, (host, _) in servers.items():
        manifest, layer = small_image(host, "bench/small")
        status, _, _ = request(host, "PUT", "/v2/bench/small/manifests/v1", body=manifest, headers={"Content-Type": OCI_MANIFEST})
        assert status == 201
        prepared[name] = (manifest, layer)
    script = os.path.join(WORK, "get-manifest.lua")
    with open(script, "w") as f:
        f.write(f'wrk.method = "GET"\nwrk.headers["Accept"] = "{OCI_MANIFEST}"\n')

    cpu = {}

    def manifest_get(name, host, pid):
        before = cpu_seconds(pid)
        rate = wrk(f"http://{host}/v2/bench/small/manifests/v1", script)
        cpu[("manifest", name)] = (cpu_seconds(pid) - before) / (rate * 10) * 1e6
        return rate

    def blob_head(name, host, pid):
        before = cpu_seconds(pid)
        rate = hey_head(f"http://{host}/v2/bench/small/blobs/{prepared[name][1]}")
        cpu[("head", name)] = (cpu_seconds(pid) - before) / (rate * 10) * 1e6
        return rate

    compare("manifest GET by tag, 32 conns, 10 s", "req/s", manifest_get)
    compare("blob HEAD, 32 conns, 10 s", "req/s", blob_head)

    for name, (host, _) in servers.items():
        manifest, _ = small_image(host, "bench/tags")
        put_tags(host, "bench/tags", manifest, TAGS)
        status, _, body = request(host, "GET", "/v2/bench/tags/tags/list")
        assert status == 200 and len(json.loads(body)["tags"]) == TAGS, (name, status)
    tag_script = os.path.join(WORK, "get.lua")
    with open(tag_script, "w") as f:
        f.write('wrk.method = "GET"\n')
    compare("tag list of 10,000 tags, 32 conns, 10 s", "req/s",
            lambda n, h, p: wrk(f"http://{h}/v2/bench/tags/tags/list", tag_script))

    # The catalog of 1,000 more repositories (each holds a blob), a page of 100.
    for name, (host, _) in servers.items():
        for i in range(REPOSITORIES):
            put_blob(host, f"catalog/repo-{i:04d}", f"repository {i}".encode())
    compare(f"catalog page of 100 ({REPOSITORIES + 3}+ repositories)", "req/s",
            lambda n, h, p: wrk(f"http://{h}/v2/_catalog?n=100", tag_script))

    sampler.stop = True
    print()
    for kind, label in [("manifest", "manifest GET"), ("head", "blob HEAD")]:
        print(f"server CPU per {label}: ours {cpu[(kind, 'ours')]:.0f} µs, peer {cpu[(kind, 'peer')]:.0f} µs")
    for name, (_, pid) in servers.items():
        print(f"{name} RSS: start {baseline[name] / 1024:.0f} MiB, peak during 256 MiB transfers "
              f"{push_peak[name] / 1024:.0f} MiB, peak overall {sampler.peak[pid] / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
