#!/usr/bin/env python3
"""Regenerates the seed inputs of fuzz/corpus/<target>/ from the sources.

HTTP targets: every request literal of the strictness table
(stoat/tests/strictness.rs), the integration tests (stoat/tests/*.rs) and
the parser's table tests (stoat/src/proto/{head,conn,body}.rs), each with the
target's leading control byte(s). ws_frame: frames built here (masked text,
binary, fragments, controls, bad UTF-8, bad close codes). config: the
documented defaults and small variants. weasel_codec: commit bodies from
weasel's tests, as JSON and as MessagePack.

Usage: python3 fuzz/seed/seed_corpus.py [OUT]  (default fuzz/corpus). Files
are named by content hash, so reruns add nothing twice; the committed corpus
is this output merged and minimized (`cargo fuzz cmin`), see fuzz/README.md.
"""
import hashlib
import os
import re
import struct
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "fuzz", "corpus")

ESC = {"r": "\r", "n": "\n", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            if n in ESC:
                out.append(ESC[n])
                i += 2
                continue
            if n == "x":
                out.append(chr(int(s[i + 2 : i + 4], 16)))
                i += 4
                continue
            if n == "\n":  # line continuation
                i += 2
                while i < len(s) and s[i] in " \t\n":
                    i += 1
                continue
        out.append(c)
        i += 1
    return "".join(out).encode("latin-1", "replace")


LIT = re.compile(r'b?"((?:[^"\\]|\\.)*)"', re.S)


def http_literals():
    files = [os.path.join(ROOT, "stoat", "tests", f) for f in sorted(os.listdir(os.path.join(ROOT, "stoat", "tests"))) if f.endswith(".rs")]
    files += [os.path.join(ROOT, "stoat", "src", "proto", f) for f in ("head.rs", "conn.rs", "body.rs")]
    found = set()
    for f in files:
        text = open(f, encoding="utf-8").read()
        for m in LIT.finditer(text):
            raw = m.group(1)
            if "{" in raw and "}" in raw:  # a format! string
                continue
            b = unescape(raw)
            if re.match(rb"^[A-Z]+ \S+ HTTP/", b) or re.match(rb"^[A-Z]+[ \t]", b) and b"HTTP" in b:
                found.add(b)
    return sorted(found)


def chunked_bodies(requests):
    bodies = set()
    for r in requests:
        if b"chunked" in r.lower() and b"\r\n\r\n" in r:
            bodies.add(r.split(b"\r\n\r\n", 1)[1])
    bodies |= {
        b"0\r\n\r\n",
        b"5\r\nhello\r\n0\r\n\r\n",
        b"5;ext=1\r\nhello\r\n6;a=\"q\"\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
        b"A\r\n0123456789\r\n0\r\n\r\n",
        b"000005\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\nhello\n0\n\n",
    }
    return sorted(bodies)


def frame(opcode, payload, fin=True, mask=b"\x11\x22\x33\x44", rsv=0, masked=True, ext=None):
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    if ext == 127 or n > 0xFFFF:
        head = bytes([b0, (0x80 if masked else 0) | 127]) + struct.pack(">Q", n)
    elif ext == 126 or n > 125:
        head = bytes([b0, (0x80 if masked else 0) | 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, (0x80 if masked else 0) | n])
    if not masked:
        return head + payload
    return head + mask + bytes(p ^ mask[i % 4] for i, p in enumerate(payload))


def ws_streams():
    text = "héllo wörld €𝄞".encode()
    s = [
        frame(1, b"hello"),
        frame(2, bytes(range(256))),
        frame(1, text),
        frame(1, text[:7], fin=False) + frame(9, b"ping") + frame(0, text[7:]),
        frame(1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"),  # surrogate
        frame(1, b"ok", fin=False) + frame(0, b"\xf4\x90\x80\x80"),  # > U+10FFFF
        frame(1, b"\xe2\x82", fin=False) + frame(0, b"\xac", fin=True),
        frame(8, struct.pack(">H", 1000) + b"bye"),
        frame(8, struct.pack(">H", 1005)),
        frame(8, b"\x03"),
        frame(8, b""),
        frame(8, struct.pack(">H", 1000) + b"\xff"),
        frame(9, b"x" * 125),
        frame(9, b"x" * 126),
        frame(10, b"pong"),
        frame(1, b"hello", masked=False),
        frame(1, b"hello", rsv=0x40),
        frame(3, b""),
        frame(0, b"cont"),
        frame(2, b"a", fin=False) + frame(2, b"b"),
        frame(9, b"", fin=False),
        frame(2, b"z" * 300, ext=126),
        frame(2, b"z" * 70, ext=127),
        bytes([0x82, 0xFF]) + b"\x80" + b"\0" * 7 + b"mask",
        frame(2, b"y" * 2000),
    ]
    out = []
    for i, st in enumerate(s):
        out.append(bytes([i % 4, 3, 1, 5, 2]) + st)
        out.append(bytes([3, 0]) + st)
    return out


def configs():
    text = open(os.path.join(ROOT, "stoat", "src", "config.rs"), encoding="utf-8").read()
    m = re.search(r'pub const DEFAULT_CONFIG: &str = r#"(.*?)"#;', text, re.S)
    base = m.group(1)
    v = [
        base,
        "",
        "[http]\nport = 0\n",
        "[http]\nport = 70000\n",
        "[http]\nprot = 8080\n",
        "[http]\nmodel = \"per_core\"\nnetwork_threads = 0\n",
        "[http]\nbuffer_size = 16\n",
        "[http.pipelines.work]\nring_buffer_size = 3\nthreads = 2\n",
        "[http.pipelines.\"bad name\"]\nthreads = 1\n",
        "[http]\nbind_address = \"::1\"\nkeepalive_timeout_sec = 99999999999\n",
        "http = 5\n",
        "[http]\nmax_headers = 1000\n",
        "[http]\nserver_name = \"x\\ny\"\n",
        "[other]\n",
    ]
    return [x.encode() for x in v]


def msgpack(v):
    if v is None:
        return b"\xc0"
    if isinstance(v, bool):
        return b"\xc3" if v else b"\xc2"
    if isinstance(v, int):
        if 0 <= v < 128:
            return bytes([v])
        if v >= 0:
            return b"\xcf" + struct.pack(">Q", v)
        return b"\xd3" + struct.pack(">q", v)
    if isinstance(v, bytes):
        return b"\xc4" + bytes([len(v)]) + v
    if isinstance(v, str):
        b = v.encode()
        return (bytes([0xA0 | len(b)]) if len(b) < 32 else b"\xd9" + bytes([len(b)])) + b
    if isinstance(v, list):
        return bytes([0x90 | len(v)]) + b"".join(msgpack(x) for x in v)
    if isinstance(v, dict):
        return bytes([0x80 | len(v)]) + b"".join(msgpack(k) + msgpack(x) for k, x in v.items())
    raise TypeError(v)


def commits():
    import json

    docs = [
        {"request_id": "c-1", "read_version": 3, "preconditions": [{"key": "a", "version": 0}],
         "operations": [{"op": "set", "key": "a", "value": "x"}, {"op": "delete", "key": "b"}]},
        {"request_id": "x", "operations": [{"op": "put", "key": "a"}]},
        {"operations": []},
        {"request_id": "x", "operations": [], "extra": 1},
        {"request_id": "r", "operations": [{"op": "set", "key": "k/é", "value": ""}]},
        {"request_id": "r", "read_version": None, "operations": [{"op": "set", "key": "k", "value": b"\x00\xff"}]},
    ]
    out = []
    for d in docs:
        out.append(msgpack(d))
        jd = {k: ([{kk: (vv.decode("latin-1") if isinstance(vv, bytes) else vv) for kk, vv in o.items()} for o in x] if isinstance(x, list) else x) for k, x in d.items()}
        out.append(json.dumps(jd).encode())
    out += [b"{", b'{"request_id":"x","operations":[]} x', b"[]", b"\x80", b"\xc1"]
    return out


def write(target, items):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    for b in items:
        name = hashlib.sha1(b).hexdigest()
        with open(os.path.join(d, name), "wb") as f:
            f.write(b)
    print(f"{target}: {len(items)} seeds")


def main():
    reqs = http_literals()
    # Keep each seed small: the long-target cases are format! strings anyway.
    reqs = [r for r in reqs if len(r) <= 2048]
    pairs = [a + b for a, b in zip(reqs, reqs[1:]) if b"\r\n\r\n" in a][:40]
    write("head", [bytes([128]) + r for r in reqs])
    write("head_diff", reqs)
    write("chunked", [bytes([3]) + b for b in chunked_bodies(reqs)])
    write("conn", [bytes([7]) + r for r in reqs + pairs])
    write("ws_frame", ws_streams())
    write("config", configs())
    write("weasel_codec", commits())


if __name__ == "__main__":
    main()
