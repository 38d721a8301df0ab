#!/usr/bin/env python3
"""List C functions longer than a limit (default 80 lines), top-level braces only.

Usage: funclen.py [--limit N] FILE...
A function whose preceding comment contains "Long:" (the reason it is long)
is listed as excused.  Exit 1 if any unexcused function is over the limit.
"""
import re
import sys


def functions(path):
    lines = open(path, encoding="utf-8", errors="replace").read().split("\n")
    depth, start, name = 0, None, None
    for i, line in enumerate(lines):
        code = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'|//.*', "", line)
        if depth == 0 and "{" in code and start is None:
            # a function body opens at column 0 after a signature line
            if line.startswith("{") or re.match(r"^[A-Za-z_].*\)\s*\{\s*$", line):
                j = i if not line.startswith("{") else i - 1
                while j > 0 and "(" not in lines[j]:
                    j -= 1
                m = re.search(r"(\w+)\s*\(", lines[j])
                if m and not lines[j].lstrip().startswith(("struct", "enum", "union", "typedef", "static const", "#")):
                    start, name = j, m.group(1)
        depth += code.count("{") - code.count("}")
        if depth == 0 and start is not None and "}" in code:
            k = start - 1
            comment = []
            while k >= 0 and (lines[k].strip().startswith(("*", "/*", "//")) or lines[k].strip().endswith("*/")):
                comment.append(lines[k])
                k -= 1
            yield name, start + 1, i - start + 1, "Long:" in "\n".join(comment)
            start, name = None, None


def main():
    args = sys.argv[1:]
    limit = 80
    if args[:1] == ["--limit"]:
        limit, args = int(args[1]), args[2:]
    bad = 0
    for p in args:
        for name, line, n, excused in functions(p):
            if n > limit:
                tag = "excused" if excused else "LONG"
                print(f"{p}:{line}: {name} {n} lines ({tag})")
                bad += not excused
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
