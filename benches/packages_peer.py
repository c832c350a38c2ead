"""Package benchmarks against peer servers, driven by benches/packages-vs-peers.sh. Not a test.

npm (ours vs Verdaccio): the packument of a package with 1,000 versions (full and abbreviated,
32 connections for 10 s each with hey), `npm install` of 50 small packages into a fresh
directory with a cold cache (median of 3), and search without text (hey, 32 connections, 10 s).
PyPI (ours vs pypiserver): the simple page of a project with 500 files and the index of 5,000
projects (hey, 32 connections, 10 s).

Usage: packages_peer.py OURS_HOST VERDACCIO_HOST PYPISERVER_HOST WORKDIR
"""

import base64
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile


def request(host, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(host, timeout=120)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def npm_tarball(name, version):
    buf = io.BytesIO()
    manifest = json.dumps({"name": name, "version": version, "main": "index.js"}).encode()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for path, data in [("package/package.json", manifest),
                           ("package/index.js", f"module.exports = '{name}@{version}';\n".encode())]:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def npm_publish(host, prefix, token, name, version):
    tarball = npm_tarball(name, version)
    document = {
        "_id": name, "name": name, "dist-tags": {"latest": version},
        "versions": {version: {
            "name": name, "version": version, "main": "index.js",
            "description": f"{name} for benchmarks", "dependencies": {},
            "dist": {"shasum": hashlib.sha1(tarball).hexdigest(),
                     "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode(),
                     "tarball": f"http://{host}{prefix}/{name}/-/{name}-{version}.tgz"}}},
        "_attachments": {f"{name}-{version}.tgz": {
            "content_type": "application/octet-stream",
            "data": base64.b64encode(tarball).decode(), "length": len(tarball)}},
    }
    status, body = request(host, "PUT", f"{prefix}/{name}", json.dumps(document),
                           {"content-type": "application/json", "authorization": f"Bearer {token}"})
    assert status in (200, 201), (host, name, version, status, body[:200])


def npm_login(host, prefix):
    user = "bench" + uuid.uuid4().hex[:8]
    body = json.dumps({"_id": f"org.couchdb.user:{user}", "name": user, "password": "benchpass1",
                       "type": "user", "roles": [], "date": "2026-01-01T00:00:00.000Z"})
    status, data = request(host, "PUT", f"{prefix}/-/user/org.couchdb.user:{user}", body,
                           {"content-type": "application/json"})
    assert status == 201, (host, status, data)
    return json.loads(data)["token"]


def hey(url, accept=None):
    args = ["hey", "-z", "10s", "-c", "32"]
    if accept:
        args += ["-H", f"Accept: {accept}"]
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True).stdout
    codes = re.findall(r"\[(\d{3})\]\s+\d+ responses", out)
    assert codes == ["200"], out
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def npm_install(registry, work, names, runs=3, before_each=None):
    """The median time of `runs` installs of `names` into a fresh directory with a cold npm
    cache; `before_each` runs before each (emptying a proxy's cache, say)."""
    app = os.path.join(work, "app")
    times = []
    for run in range(runs):
        if before_each:
            before_each()
        shutil.rmtree(app, ignore_errors=True)
        os.makedirs(app)
        with open(os.path.join(app, "package.json"), "w") as f:
            json.dump({"name": "app", "version": "1.0.0",
                       "dependencies": {n: "^1.0.0" for n in names}}, f)
        with open(os.path.join(app, ".npmrc"), "w") as f:
            f.write(f"registry={registry}\naudit=false\nfund=false\nupdate-notifier=false\n")
        cache = os.path.join(work, f"cache-{run}-{uuid.uuid4().hex[:6]}")
        start = time.monotonic()
        subprocess.run(["npm", "install", "--cache", cache, "--userconfig", os.path.join(app, ".npmrc"),
                        "--no-audit", "--no-fund"], cwd=app, check=True, capture_output=True)
        times.append(time.monotonic() - start)
        shutil.rmtree(cache, ignore_errors=True)
    return statistics.median(times)


def wheel(name, version):
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.8\n\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(f"{dist}/__init__.py", f"VERSION = '{version}'\n")
        z.writestr(f"{info}/METADATA", metadata)
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return f"{dist}-{version}-py3-none-any.whl", buf.getvalue()


def sdist(name, version):
    dist = name.replace("-", "_")
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo(f"{dist}-{version}/PKG-INFO")
        info.size = len(metadata)
        t.addfile(info, io.BytesIO(metadata))
    return f"{dist}-{version}.tar.gz", buf.getvalue()


def pypi_upload(host, path, name, version, filename, content, filetype):
    boundary = uuid.uuid4().hex
    fields = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
              "filetype": filetype, "pyversion": "py3" if filetype == "bdist_wheel" else "source",
              "metadata_version": "2.1", "sha256_digest": hashlib.sha256(content).hexdigest()}
    parts = []
    for key, value in fields.items():
        parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n{value}\r\n".encode())
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; filename=\"{filename}\"\r\n"
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    auth = base64.b64encode(b"bench:benchpass1").decode()
    status, body = request(host, "POST", path, b"".join(parts),
                           {"content-type": f"multipart/form-data; boundary={boundary}",
                            "authorization": f"Basic {auth}"})
    assert status == 200, (host, filename, status, body[:200])


def report(what, ours, peer, unit):
    print(f"{what:<46} ours {ours:>10.1f} {unit}  peer {peer:>10.1f} {unit}  {ours / peer:6.2f}x")


def main():
    ours, verdaccio, pypiserver, work = sys.argv[1:5]
    ours_npm = "/npm/bench"

    # npm: one package with 1,000 versions.
    tokens = {ours: npm_login(ours, ours_npm), verdaccio: npm_login(verdaccio, "")}
    start = time.monotonic()
    for version in range(1000):
        npm_publish(ours, ours_npm, tokens[ours], "many", f"1.0.{version}")
    ours_publish = time.monotonic() - start
    start = time.monotonic()
    for version in range(1000):
        npm_publish(verdaccio, "", tokens[verdaccio], "many", f"1.0.{version}")
    peer_publish = time.monotonic() - start
    print(f"publishing 1,000 versions over HTTP: ours {ours_publish:.1f} s, peer {peer_publish:.1f} s "
          f"({peer_publish / ours_publish:.2f}x)")
    abbreviated = "application/vnd.npm.install-v1+json"
    report("npm packument, 1,000 versions (abbreviated)",
           hey(f"http://{ours}{ours_npm}/many", abbreviated), hey(f"http://{verdaccio}/many", abbreviated), "req/s")
    report("npm packument, 1,000 versions (full)",
           hey(f"http://{ours}{ours_npm}/many"), hey(f"http://{verdaccio}/many"), "req/s")

    # npm install of 50 small packages.
    names = [f"small-{i:02d}" for i in range(50)]
    for name in names:
        npm_publish(ours, ours_npm, tokens[ours], name, "1.0.0")
        npm_publish(verdaccio, "", tokens[verdaccio], name, "1.0.0")
    ours_install = npm_install(f"http://{ours}{ours_npm}/", os.path.join(work, "npm-ours"), names)
    peer_install = npm_install(f"http://{verdaccio}/", os.path.join(work, "npm-peer"), names)
    print(f"{'npm install of 50 packages, cold cache (median of 3)':<46} ours {ours_install:>8.2f} s  "
          f"peer {peer_install:>8.2f} s  {peer_install / ours_install:6.2f}x")
    # Search without text: the whole repository's listing, 51 packages, a page of 20.
    report("npm search without text, 51 packages, size 20",
           hey(f"http://{ours}{ours_npm}/-/v1/search?text=&size=20"),
           hey(f"http://{verdaccio}/-/v1/search?text=&size=20"), "req/s")

    # PyPI: a project with 500 files, then 5,000 projects.
    for version in range(250):
        for make, filetype in [(wheel, "bdist_wheel"), (sdist, "sdist")]:
            filename, content = make("big-project", f"1.{version}")
            pypi_upload(ours, "/pypi/pybench/", "big-project", f"1.{version}", filename, content, filetype)
            pypi_upload(pypiserver, "/", "big-project", f"1.{version}", filename, content, filetype)
    json_accept = "application/vnd.pypi.simple.v1+json"
    report("PyPI simple page, 500 files (HTML)",
           hey(f"http://{ours}/pypi/pybench/simple/big-project/"), hey(f"http://{pypiserver}/simple/big-project/"), "req/s")
    report("PyPI simple page, 500 files (ours JSON)",
           hey(f"http://{ours}/pypi/pybench/simple/big-project/", json_accept),
           hey(f"http://{pypiserver}/simple/big-project/"), "req/s")
    start = time.monotonic()
    for i in range(5000):
        filename, content = wheel(f"proj-{i:04d}", "1.0")
        pypi_upload(ours, "/pypi/pybench/", f"proj-{i:04d}", "1.0", filename, content, "bdist_wheel")
    ours_upload = time.monotonic() - start
    start = time.monotonic()
    for i in range(5000):
        filename, content = wheel(f"proj-{i:04d}", "1.0")
        pypi_upload(pypiserver, "/", f"proj-{i:04d}", "1.0", filename, content, "bdist_wheel")
    peer_upload = time.monotonic() - start
    print(f"uploading 5,000 wheels: ours {ours_upload:.1f} s, peer {peer_upload:.1f} s "
          f"({peer_upload / ours_upload:.2f}x)")
    report("PyPI index of 5,001 projects (HTML)",
           hey(f"http://{ours}/pypi/pybench/simple/"), hey(f"http://{pypiserver}/simple/"), "req/s")


if __name__ == "__main__":
    main()
