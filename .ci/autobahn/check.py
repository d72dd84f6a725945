#!/usr/bin/env python3
"""Compares a kosoku (Autobahn fuzzingclient) report with the committed
expected results and fails on any change for the worse.

usage: check.py EXPECTED.json REPORT_DIR/index.json LABEL

A case passes when both its `behavior` and `behaviorClose` are OK,
NON-STRICT or INFORMATIONAL and no worse than expected (OK and
INFORMATIONAL rank best, then NON-STRICT; anything else, such as FAILED or
UNIMPLEMENTED, is a failure). A case expected but missing from the report
fails; a new case in the report must pass the same rule. Prints a summary.
"""

import collections
import json
import sys

RANK = {"OK": 0, "INFORMATIONAL": 0, "NON-STRICT": 1}
WORST = 99


def rank(value):
    return RANK.get(value, WORST)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    expected_path, report_path, label = sys.argv[1:]
    with open(expected_path) as f:
        expected = json.load(f)["cases"]
    with open(report_path) as f:
        report = json.load(f)
    if len(report) != 1:
        sys.exit(f"{label}: expected one agent in {report_path}, got {list(report)}")
    (agent, cases), = report.items()
    problems = []
    for case, want in sorted(expected.items()):
        got = cases.get(case)
        if got is None:
            problems.append(f"{case}: missing from the report")
            continue
        for key in ("behavior", "behaviorClose"):
            if rank(got[key]) > min(rank(want[key]), RANK["NON-STRICT"]):
                problems.append(f"{case}: {key} {got[key]} (expected {want[key]})")
    for case in sorted(set(cases) - set(expected)):
        for key in ("behavior", "behaviorClose"):
            if rank(cases[case][key]) == WORST:
                problems.append(f"{case}: new case, {key} {cases[case][key]}")
    summary = collections.Counter(
        (c["behavior"], c["behaviorClose"]) for c in cases.values()
    )
    shown = ", ".join(f"{b}/{c}: {n}" for (b, c), n in sorted(summary.items()))
    print(f"{label} ({agent}): {len(cases)} cases; behavior/behaviorClose {shown}")
    if problems:
        print(f"{label}: {len(problems)} case(s) worse than expected:")
        for p in problems:
            print(f"  {p}")
        sys.exit(1)


if __name__ == "__main__":
    main()
