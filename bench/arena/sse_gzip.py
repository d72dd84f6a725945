#!/usr/bin/env python3
"""A real client of a compressed event stream: raw socket, Python's zlib.

usage: sse_gzip.py HOST:PORT PATH [--seconds N] [--coding gzip]

Sends GET PATH with Accept-Encoding: gzip, reads the chunked body and feeds
each chunk to one zlib decompressor (gzip framing) as it arrives, printing
what each chunk decodes to at once: every event and every heartbeat must
come out of its own chunk (the server flushes per event), and the end of
the stream must complete the gzip member (CRC and length checked by zlib).
Stops after --seconds (default 5) or at the stream's end.
"""

import argparse
import socket
import sys
import time
import zlib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("addr")
    ap.add_argument("path")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    host, port = args.addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=args.seconds)
    s.sendall(f"GET {args.path} HTTP/1.1\r\nHost: {host}\r\nAccept-Encoding: gzip\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, buf = buf.partition(b"\r\n\r\n")
    print(head.decode("latin-1"))
    if b"content-encoding: gzip" not in head.lower():
        sys.exit("sse_gzip.py: the stream is not gzip-coded")
    z = zlib.decompressobj(16 + zlib.MAX_WBITS)
    start = time.time()
    chunks = 0
    while time.time() - start < args.seconds:
        while True:
            line_end = buf.find(b"\r\n")
            if line_end < 0:
                break
            size = int(buf[:line_end].split(b";")[0], 16)
            if size == 0:
                z.flush()
                print(f"[{time.time() - start:6.2f}s] end of stream; gzip member complete: {z.eof}")
                sys.exit(0 if z.eof else 1)
            if len(buf) < line_end + 2 + size + 2:
                break
            data = buf[line_end + 2:line_end + 2 + size]
            buf = buf[line_end + 2 + size + 2:]
            chunks += 1
            text = z.decompress(data)
            print(f"[{time.time() - start:6.2f}s] chunk {chunks}: {size} bytes coded -> {text!r}")
        try:
            more = s.recv(65536)
        except socket.timeout:
            break
        if not more:
            break
        buf += more
    print(f"stopped after {time.time() - start:.1f}s, {chunks} chunks")


if __name__ == "__main__":
    main()
