#!/usr/bin/env python3
"""Bytes on the wire for the static profile: stoat against nginx (gzip_static,
brotli_static), per file and in total, for the same requests.

usage: static_bytes.py [--accept "br;q=1, gzip;q=0.8"] [--servers stoat,nginx]

Each server is started as arena.py starts it (bench/arena/build.sh first);
every one of the profile's 20 files is fetched once over a fresh connection
with the given Accept-Encoding, and the response's bytes are counted as they
arrive: the head (status line and fields) and the body. Prints per file the
Content-Encoding, head and body bytes of each server, and the total's ratio
to the first server's total.
"""

import argparse
import os
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arena  # noqa: E402

FILES = [
    "reset.css", "layout.css", "theme.css", "components.css", "utilities.css",
    "analytics.js", "helpers.js", "app.js", "vendor.js", "router.js",
    "header.html", "footer.html", "regular.woff2", "bold.woff2",
    "logo.svg", "icon-sprite.svg", "hero.webp", "thumb1.webp", "thumb2.webp",
    "manifest.json",
]


def fetch(path, accept):
    """(head bytes, body bytes, content-encoding) of one GET."""
    req = f"GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept-Encoding: {accept}\r\nConnection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", arena.PORT), timeout=5) as s:
        s.sendall(req.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    fields = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        fields[k.strip().lower()] = v.strip()
    status = int(head.split()[1])
    if status != 200:
        sys.exit(f"static_bytes.py: {path}: status {status}")
    if int(fields.get("content-length", len(body))) != len(body):
        sys.exit(f"static_bytes.py: {path}: body of {len(body)} bytes, Content-Length {fields.get('content-length')}")
    return len(head) + 4, len(body), fields.get("content-encoding", "-")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accept", default="br;q=1, gzip;q=0.8")
    ap.add_argument("--servers", default="stoat,nginx")
    args = ap.parse_args()
    servers = args.servers.split(",")
    out = tempfile.mkdtemp(prefix="arena-static.")
    got = {}
    for name in servers:
        srv = arena.Server(name, "0", out)
        srv.start()
        try:
            got[name] = {f: fetch(f"/static/{f}", args.accept) for f in FILES}
        finally:
            srv.stop()
    print(f"Accept-Encoding: {args.accept}")
    hdr = f"{'file':16}" + "".join(f" {s + ' enc':>11} {'head':>5} {'body':>7} {'wire':>7}" for s in servers)
    if len(servers) == 2:
        hdr += f" {'wire ratio':>10}"
    print(hdr)
    totals = {s: [0, 0] for s in servers}
    for f in FILES:
        line = f"{f:16}"
        for s in servers:
            h, b, enc = got[s][f]
            totals[s][0] += h
            totals[s][1] += b
            line += f" {enc:>11} {h:5d} {b:7d} {h + b:7d}"
        if len(servers) == 2:
            a, b = (sum(got[s][f][:2]) for s in servers)
            line += f" {a / b:10.4f}"
        print(line)
    line = f"{'total':16}"
    for s in servers:
        h, b = totals[s]
        line += f" {'':>11} {h:5d} {b:7d} {h + b:7d}"
    if len(servers) == 2:
        a, b = (sum(totals[s]) for s in servers)
        line += f" {a / b:10.4f}"
    print(line)
    if len(servers) == 2:
        a, b = (totals[s][1] for s in servers)
        print(f"bodies only: {servers[0]} {a} / {servers[1]} {b} = {a / b:.4f}")


if __name__ == "__main__":
    main()
