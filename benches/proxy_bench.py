"""Proxy and virtual repositories against hosted ones and against Verdaccio, driven by
benches/proxy-vs-hosted.sh. Not a test.

Usage: proxy_bench.py UPSTREAM PROXY VERDACCIO WORKDIR
"""

import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from packages_peer import (  # noqa: E402
    hey, npm_install, npm_login, npm_publish, pypi_upload, request, sdist, wheel)


def report(what, a_name, a, b_name, b, unit):
    print(f"{what:<44} {a_name} {a:>9.1f} {unit}  {b_name} {b:>9.1f} {unit}  {a / b:5.2f}x")


def main():
    upstream, proxy, verdaccio, work = sys.argv[1:5]
    up_token = npm_login(upstream, "/npm/public")
    corp_token = npm_login(proxy, "/npm/corp")

    # One package of 1,000 versions on each side: hosted here, upstream there.
    for i in range(1000):
        version = f"1.{i // 100}.{i % 100}"
        npm_publish(proxy, "/npm/corp", corp_token, "bench-hosted", version)
        npm_publish(upstream, "/npm/public", up_token, "bench-proxied", version)
    # Fifty small packages upstream, for installs.
    names = [f"dep-{i:02d}" for i in range(50)]
    for name in names:
        npm_publish(upstream, "/npm/public", up_token, name, "1.0.0")
    # A project of 500 files on each side.
    for i in range(250):
        version = f"1.{i}"
        for host, path, project in [(proxy, "/pypi/pcorp/", "hosted-proj"),
                                    (upstream, "/pypi/ppublic/", "proxied-proj")]:
            for build in (wheel, sdist):
                filename, content = build(project, version)
                filetype = "bdist_wheel" if build is wheel else "sdist"
                pypi_upload(host, path, project, version, filename, content, filetype)

    # Warm the proxy's cache, then measure.
    for path in ["/npm/all/bench-proxied", "/npm/all/bench-proxied/-/bench-proxied-1.0.0.tgz",
                 "/pypi/pall/simple/proxied-proj/"]:
        status, _ = request(proxy, "GET", path)
        assert status == 200, (path, status)
    base = f"http://{proxy}"
    report("npm packument, 1,000 versions", "virtual", hey(f"{base}/npm/all/bench-proxied"),
           "hosted", hey(f"{base}/npm/corp/bench-hosted"), "req/s")
    report("npm packument (virtual over hosted member)", "virtual",
           hey(f"{base}/npm/all/bench-hosted"), "hosted", hey(f"{base}/npm/corp/bench-hosted"),
           "req/s")
    report("npm tarball", "virtual", hey(f"{base}/npm/all/bench-proxied/-/bench-proxied-1.0.0.tgz"),
           "hosted", hey(f"{base}/npm/corp/bench-hosted/-/bench-hosted-1.0.0.tgz"), "req/s")
    report("PyPI simple page, 500 files", "virtual",
           hey(f"{base}/pypi/pall/simple/proxied-proj/"), "hosted",
           hey(f"{base}/pypi/pcorp/simple/hosted-proj/"), "req/s")

    # npm install of 50 packages: cold (the proxy's cache emptied, Verdaccio restarted on an
    # empty storage, before each run) and warm (their caches full; npm's always empty).
    def empty_ours():
        status, _ = request(proxy, "DELETE", "/api/v1/package-repositories/npmjs/cache")
        assert status == 200, status

    verdaccio_process = [None]

    def restart_verdaccio():
        if verdaccio_process[0]:
            verdaccio_process[0].terminate()
            verdaccio_process[0].wait()
        shutil.rmtree(os.path.join(work, "verdaccio-data", "storage"), ignore_errors=True)
        log = open(os.path.join(work, "verdaccio.log"), "a")
        verdaccio_process[0] = subprocess.Popen(
            [os.path.join(work, "verdaccio/node_modules/.bin/verdaccio"),
             "--config", os.path.join(work, "verdaccio-data/config.yaml")],
            stdout=log, stderr=log)
        for _ in range(300):
            try:
                if request(verdaccio, "GET", "/-/ping")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("verdaccio did not start")

    try:
        ours_url, theirs_url = f"http://{proxy}/npm/all/", f"http://{verdaccio}/"
        report("npm install, 50 packages, proxy cache cold", "ours",
               npm_install(ours_url, work, names, before_each=empty_ours), "verdaccio",
               npm_install(theirs_url, work, names, before_each=restart_verdaccio), "s")
        report("npm install, 50 packages, proxy cache warm", "ours",
               npm_install(ours_url, work, names), "verdaccio",
               npm_install(theirs_url, work, names), "s")
    finally:
        if verdaccio_process[0]:
            verdaccio_process[0].terminate()


if __name__ == "__main__":
    main()
