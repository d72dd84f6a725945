#!/usr/bin/env python3
"""The live dashboard in headless Chromium, against a server under load.

usage: test_dashboard.py SERVER_BINARY [--weasel] [--screenshot PATH] [-- SERVER ARGS...]

Starts SERVER_BINARY (default arguments: the `bench` example's, with
`--metrics /metrics --dashboard /dashboard` on port 0), reads its address
from its `listening` log line, puts it under load from client threads
(keep-alive GETs of /plaintext, and a 404 in every 20 for the error
tiles; with --weasel, the server is Weasel in a fresh data directory and
the load is commits, some retried with the same request_id and some with
a stale precondition, and key reads), opens /dashboard in Chromium driven by chromedriver (selenium),
and asserts from the DOM:

  - the page went live (the status reads "live") and received at least
    four samples over its SSE feed (body[data-updates]);
  - requests/s, connections, p50/p99/p99.9, errors/s, buffers are numbers,
    not the "–" placeholder;
  - requests/s is above zero and the request total shown grows between
    two samples (the numbers change);
  - the error rate shows 4xx > 0 (the load sends 404s);
  - every chart canvas has non-blank pixels;
  - with --weasel: the service's tiles (commits/s, conflicts/s, log write
    + fsync latency, watchers) are there and commits/s is above zero.

Then it saves a screenshot (when asked), stops the load, and stops the
server by its PID (SIGTERM), waiting for it. Every wait is bounded: the
whole test fails rather than hangs (60 s at most).
"""

import http.client
import os
import re
import signal
import subprocess
import sys
import threading
import time

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

DEADLINE = 60.0


def start_server(argv):
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    addr = None
    end = time.monotonic() + 30
    lines = []
    while time.monotonic() < end:
        line = proc.stderr.readline()
        if not line:
            break
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        lines.append(line)
        m = re.search(r"address=(\S+)", line)
        if m and "listening" in line:
            addr = m.group(1)
            break
    if addr is None:
        proc.kill()
        raise SystemExit("the server did not log its address:\n" + "".join(lines))
    # Keep draining its stderr so it never blocks on a full pipe.
    threading.Thread(target=lambda: proc.stderr.read(), daemon=True).start()
    return proc, addr


def load(addr, stop, counts):
    host, port = addr.rsplit(":", 1)
    i = 0
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=5)
            for _ in range(500):
                if stop.is_set():
                    break
                i += 1
                path = "/nowhere" if i % 20 == 0 else "/plaintext"
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                counts[r.status] = counts.get(r.status, 0) + 1
            c.close()
        except OSError:
            if stop.is_set():
                break


def load_weasel(addr, stop, counts):
    import json
    host, port = addr.rsplit(":", 1)
    n = 0
    tag = f"{threading.get_ident()}"
    while not stop.is_set():
        try:
            c = http.client.HTTPConnection(host, int(port), timeout=5)
            for _ in range(200):
                if stop.is_set():
                    break
                n += 1
                rid = f"{tag}-{n - 1 if n % 10 == 0 else n}"  # every 10th retries
                pre = [{"key": "hot", "version": 999}] if n % 7 == 0 else []  # conflicts
                body = json.dumps({"request_id": rid, "preconditions": pre,
                                   "operations": [{"op": "set", "key": f"k{n % 50}", "value": "v" * 32}]})
                c.request("POST", "/v1/commit", body, {"Content-Type": "application/json"})
                r = c.getresponse()
                r.read()
                counts[r.status] = counts.get(r.status, 0) + 1
                c.request("GET", f"/v1/kv/k{n % 50}" if n % 20 else "/nowhere")
                r = c.getresponse()
                r.read()
                counts[r.status] = counts.get(r.status, 0) + 1
            c.close()
        except OSError:
            if stop.is_set():
                break


def number(text):
    """A displayed value as a float ("12.3k" -> 12300), None for "–"."""
    text = text.strip().replace("\u00a0", " ")
    m = re.match(r"^([0-9.]+)\s*([kMG]?)", text)
    if not m:
        return None
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[m.group(2)]


def main():
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    binary = args.pop(0)
    weasel = args[:1] == ["--weasel"]
    if weasel:
        args = args[1:]
    shot = None
    if args[:1] == ["--screenshot"]:
        shot = args[1]
        args = args[2:]
    if args[:1] == ["--"]:
        server_args = args[1:]
    elif weasel:
        import tempfile
        server_args = ["--port", "0", "--data-dir", tempfile.mkdtemp(prefix="weasel-dashboard-")]
    else:
        server_args = ["--port", "0", "--metrics", "/metrics", "--dashboard", "/dashboard"]
    path = "/dashboard"
    for i, a in enumerate(server_args):
        if a == "--dashboard":
            path = server_args[i + 1]
    start = time.monotonic()
    proc, addr = start_server([binary] + server_args)
    stop = threading.Event()
    counts = {}
    target = load_weasel if weasel else load
    loaders = [threading.Thread(target=target, args=(addr, stop, counts), daemon=True) for _ in range(3)]
    driver = None
    try:
        for t in loaders:
            t.start()
        opts = Options()
        for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,820",
                     f"--user-data-dir=/tmp/stoat-dashboard-chromium-{os.getpid()}"]:
            opts.add_argument(flag)
        opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
        service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
        driver = webdriver.Chrome(service=service, options=opts)
        driver.set_page_load_timeout(20)
        driver.get(f"http://{addr}{path}")
        wait = WebDriverWait(driver, 20)
        updates = lambda: int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-updates"))
        wait.until(lambda d: updates() >= 2)
        text = lambda id_: driver.find_element(By.ID, id_).text
        first_total = number(text("s-rps").split("total ")[1])
        first = updates()
        wait.until(lambda d: updates() >= first + 2)
        status = text("status")
        assert status == "live", status
        values = {k: text(k) for k in ["v-rps", "v-conn", "v-p50", "v-p99", "v-p999", "v-err",
                                        "v-4xx", "v-5xx", "v-buf", "s-rps"]}
        for k, v in values.items():
            assert v and v != "–", f"{k} shows no number: {v!r} ({values})"
        rps = number(values["v-rps"])
        assert rps is not None and rps > 0, values
        total = number(values["s-rps"].split("total ")[1])
        assert total > first_total, (first_total, total)
        assert number(values["v-4xx"]) > 0, values
        assert re.match(r"^[0-9.]+ (µs|ms|s)$", values["v-p50"]), values
        blank = driver.execute_script("""
            return [...document.querySelectorAll('canvas')].filter(c => {
              const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
              for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return false;
              return true;
            }).map(c => c.id);""")
        assert not blank, f"blank charts: {blank}"
        if weasel:
            for tile in ["commits", "conflicts", "fsync", "watchers"]:
                driver.find_element(By.ID, f"t-x-{tile}")
            commits = number(text("v-x-commits"))
            assert commits is not None and commits > 0, text("v-x-commits")
            assert re.match(r"^[0-9.]+ (µs|ms|s)$", text("v-x-fsync")), text("v-x-fsync")
            values["commits"] = text("v-x-commits")
            values["fsync"] = text("v-x-fsync")
        if shot:
            wait.until(lambda d: updates() >= first + 6)
            driver.save_screenshot(shot)
        print(f"dashboard ok: {updates()} samples, {values}, load {counts}, "
              f"{time.monotonic() - start:.1f} s")
        assert time.monotonic() - start < DEADLINE
    finally:
        stop.set()
        if driver is not None:
            driver.quit()
        for t in loaders:
            t.join(timeout=10)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


if __name__ == "__main__":
    main()
