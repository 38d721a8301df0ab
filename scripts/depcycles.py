#!/usr/bin/env python3
"""Report dependency cycles between libckpt's object files.

An edge A -> B means A.o uses a symbol that B.o defines (nm: U in A, T/D/B/R in B).
A cycle is a strongly connected component of more than one file. Exit status 1 if
any exists, so that `make depcheck` (and the test suite) fail on a new one.

Usage: depcycles.py OBJDIR [--graph]
"""
import os
import subprocess
import sys


def symbols(obj):
    out = subprocess.run(["nm", "--defined-only", "-g", obj], capture_output=True,
                         text=True, check=True).stdout
    defined = {l.split()[-1] for l in out.splitlines() if l.strip()}
    out = subprocess.run(["nm", "-u", obj], capture_output=True, text=True,
                         check=True).stdout
    used = {l.split()[-1] for l in out.splitlines() if l.strip()}
    return defined, used


def sccs(nodes, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    objdir = sys.argv[1]
    objs = sorted(f for f in os.listdir(objdir) if f.endswith(".o"))
    if not objs:
        print(f"depcycles: no objects in {objdir}", file=sys.stderr)
        return 2
    defs, uses = {}, {}
    for o in objs:
        name = o[:-2]
        defs[name], uses[name] = symbols(os.path.join(objdir, o))
    owner = {}
    for n, ds in defs.items():
        for s in ds:
            owner[s] = n
    edges = {n: set() for n in defs}
    why = {}
    for n, us in uses.items():
        for s in us:
            m = owner.get(s)
            if m and m != n:
                edges[n].add(m)
                why.setdefault((n, m), []).append(s)
    if "--graph" in sys.argv:
        for n in sorted(edges):
            print(f"{n}: {' '.join(sorted(edges[n]))}")
    bad = [c for c in sccs(defs, edges) if len(c) > 1]
    for c in bad:
        print("cycle: " + " ".join(c))
        for a in c:
            for b in c:
                if (a, b) in why:
                    print(f"  {a} -> {b}: {', '.join(sorted(why[(a, b)])[:6])}")
    if not bad:
        print(f"depcycles: {len(objs)} objects, no cycle")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
