#!/usr/bin/env python3
"""cgfuncs.py — callgrind counts per function (the symbol, whatever source
files were inlined into it), self and inclusive, divided by a request count;
with two files, the difference per function.

usage: cgfuncs.py [--top N] [--min IR] FILE:REQUESTS [FILE:REQUESTS]
  FILE      a callgrind output (e.g. bench/results/NAME.out.1 from measure.py)
  REQUESTS  what to divide by (responses, or connections)
One file: the functions by inclusive cost per request (self and inclusive).
Two files: both columns per file and the change (second minus first),
sorted by the size of the change in self cost: where instructions moved.

Why not callgrind_annotate: it groups by file:function, where the file is
the inlined source of each instruction, so one function appears under many
names; here a function is one row, as the compiler emitted it (symbol names
with their hash suffix are shortened to the path).
"""

import re
import sys
from collections import defaultdict


def short(name):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    return name


def parse(path):
    names = {}
    self_cost = defaultdict(int)
    incl_calls = defaultdict(int)  # cost of calls made by fn to others
    fn = None
    cfn = None
    pending_call = False
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c0 = line[0]
            if c0.isdigit() or c0 in "+-*":
                parts = line.split()
                if len(parts) < 2:
                    continue
                cost = int(parts[1])
                if pending_call:
                    if cfn != fn:
                        incl_calls[fn] += cost
                    pending_call = False
                else:
                    self_cost[fn] += cost
                continue
            if line.startswith("fn="):
                fn = resolve(names, "fn", line[3:])
            elif line.startswith("cfn="):
                cfn = resolve(names, "fn", line[4:])
            elif line.startswith("calls="):
                pending_call = True
            elif line.startswith(("fl=", "fi=", "fe=", "cfi=", "cfl=", "ob=", "cob=")):
                key, val = line.split("=", 1)
                kind = {"fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl", "ob": "ob", "cob": "ob"}[key]
                resolve(names, kind, val)
    incl = {k: self_cost.get(k, 0) + incl_calls.get(k, 0) for k in set(self_cost) | set(incl_calls)}
    return {k: v for k, v in self_cost.items()}, incl


def resolve(names, kind, val):
    m = re.match(r"\((\d+)\)(?: (.*))?$", val)
    if not m:
        return short(val)
    key = (kind, m.group(1))
    if m.group(2) is not None:
        names[key] = short(m.group(2))
    return names.get(key, val)


def main():
    args = sys.argv[1:]
    top, minir = 40, 1.0
    while args and args[0].startswith("--"):
        if args[0] == "--top":
            top = int(args[1])
        elif args[0] == "--min":
            minir = float(args[1])
        args = args[2:]
    if len(args) not in (1, 2):
        sys.exit(__doc__)
    runs = []
    for a in args:
        path, n = a.rsplit(":", 1)
        s, i = parse(path)
        n = int(n)
        runs.append(({k: v / n for k, v in s.items()}, {k: v / n for k, v in i.items()}))
    if len(runs) == 1:
        s, i = runs[0]
        print(f"total self: {sum(s.values()):,.1f} per request")
        print(f"| function | self | inclusive |\n|---|---:|---:|")
        for k in sorted(i, key=lambda k: -i[k])[:top]:
            if i[k] < minir:
                break
            print(f"| `{k}` | {s.get(k, 0):,.1f} | {i[k]:,.1f} |")
        return
    (s1, i1), (s2, i2) = runs
    print(f"total self: {sum(s1.values()):,.1f} -> {sum(s2.values()):,.1f} per request")
    keys = set(s1) | set(s2) | set(i1) | set(i2)
    rows = []
    for k in keys:
        a, b = s1.get(k, 0), s2.get(k, 0)
        ia, ib = i1.get(k, 0), i2.get(k, 0)
        if max(abs(b - a), abs(ib - ia)) >= minir:
            rows.append((k, a, b, ia, ib))
    print("| function | self A | self B | Δ self | incl A | incl B | Δ incl |\n|---|---:|---:|---:|---:|---:|---:|")
    for k, a, b, ia, ib in sorted(rows, key=lambda r: -abs(r[2] - r[1]))[:top]:
        print(f"| `{k}` | {a:,.1f} | {b:,.1f} | {b - a:+,.1f} | {ia:,.1f} | {ib:,.1f} | {ib - ia:+,.1f} |")


if __name__ == "__main__":
    main()
