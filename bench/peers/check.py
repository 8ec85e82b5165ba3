#!/usr/bin/env python3
"""check.py TASK WANT GOT — do two tools' outputs for a bench task agree?

Outputs are normalised before they are compared, so that tools that print
the same answer differently agree:
  T1: the first integer in each file (the row count);
  T2, T4: CSV with a header; rows are (id, fare, tip) by position, sorted
          by id; numbers compare as numbers (51.20 == 51.2);
  T3: CSV with a header; rows are (payment, passenger_count, count, sum,
      mean) by position, keyed by the first two; count exactly, sum to a
      relative 1e-9, mean to a relative 1e-6 (tools sum in other orders).
Exit 0 when they agree; 1 with the first difference on stderr otherwise.
"""
import csv
import math
import re
import sys


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def rows(path):
    with open(path, newline="") as f:
        r = list(csv.reader(f))
    return r[1:] if r else []


def close(a, b, rel):
    x, y = num(a), num(b)
    if x is None or y is None:
        return a == b
    return math.isclose(x, y, rel_tol=rel, abs_tol=1e-9)


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def main():
    task, want_p, got_p = sys.argv[1:4]
    if task == "T1":
        w, g = (re.search(r"\d+", open(p).read()) for p in (want_p, got_p))
        if not w or not g or w.group() != g.group():
            fail(f"count {g and g.group()} != {w and w.group()}")
        return
    want, got = rows(want_p), rows(got_p)
    if len(want) != len(got):
        fail(f"{len(got)} rows, want {len(want)}")
    if task in ("T2", "T4"):
        key = lambda r: (num(r[0]) if num(r[0]) is not None else r[0])
        for w, g in zip(sorted(want, key=key), sorted(got, key=key)):
            if len(g) < 3 or not all(close(a, b, 1e-12) for a, b in zip(w[:3], g[:3])):
                fail(f"row {g} != {w}")
        return
    if task == "T3":
        gmap = {(r[0], str(int(float(r[1])))): r for r in got}
        for w in want:
            g = gmap.get((w[0], str(int(float(w[1])))))
            if (g is None or int(float(g[2])) != int(float(w[2])) or not close(g[3], w[3], 1e-9)
                    or not close(g[4], w[4], 1e-6)):
                fail(f"group {w[:2]}: {g} != {w}")
        return
    fail(f"unknown task {task}")


if __name__ == "__main__":
    main()
