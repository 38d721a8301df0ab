"""bench.py [--compare] [-n N] - redis-benchmark's default test list runs
against redis-ckpt with no errors (every test reports its rate, nothing
else is printed).  With --compare, also runs it against redis-server 7.0
(same machine, same options, run alternately) and prints the throughput ratio
per test: the figure the README reports (>= 0.8x is the goal outside
checkpoints)."""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Server, check  # noqa: E402

EXPECTED = ["PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "LPUSH", "RPUSH", "LPOP", "RPOP", "SADD", "HSET",
            "SPOP", "ZADD", "ZPOPMIN", "LPUSH (needed to benchmark LRANGE)", "LRANGE_100 (first 100 elements)",
            "LRANGE_300 (first 300 elements)", "LRANGE_500 (first 500 elements)",
            "LRANGE_600 (first 600 elements)", "MSET (10 keys)"]


def run_benchmark(port, n, extra=()):
    p = subprocess.run(["redis-benchmark", "-p", str(port), "-q", "-n", str(n)] + list(extra),
                       capture_output=True, text=True, timeout=600)
    # -q prints progress lines ending in \r; the final line of each test
    # follows the last \r
    rates = {}
    problems = []
    for line in re.split(r"[\r\n]", p.stdout + p.stderr):
        line = line.strip()
        if not line or re.search(r"rps=[-0-9.na]+ \(overall: ", line):
            continue  # a progress line
        m = re.match(r"^(.*): ([0-9.]+) requests per second", line)
        if m:
            rates[m.group(1)] = float(m.group(2))
        else:
            problems.append(line)
    return p.returncode, rates, problems


TESTS = ["ping_inline", "ping_mbulk", "set", "get", "incr", "lpush", "rpush", "lpop", "rpop", "sadd", "hset", "spop",
         "zadd", "zpopmin", "lrange_100", "lrange_300", "lrange_500", "lrange_600", "mset"]


def cpu_ns(pid):
    with open("/proc/%d/schedstat" % pid) as f:
        return int(f.read().split()[0])


def compare_with_redis(ck, n, rounds=3):
    """Per test: best req/s of `rounds` alternating runs, and the server's
    CPU time per request (/proc/PID/schedstat), which a busy machine
    disturbs much less than req/s."""
    rs = Server(kind="redis")
    best = {}
    for _ in range(rounds):
        for t in TESTS:
            for name, srv in (("redis", rs), ("ckpt", ck)):
                c0 = cpu_ns(srv.proc.pid)
                _, rates, _ = run_benchmark(srv.port, n, ["-t", t])
                cpu = (cpu_ns(srv.proc.pid) - c0) / max(1, n * len(rates))
                key = [k for k in rates if not k.startswith("LPUSH (")]
                rps = rates[key[0]] if key else 0
                b = best.setdefault((t, name), [0.0, 1e18])
                b[0] = max(b[0], rps)
                b[1] = min(b[1], cpu)
    print("\n%-12s %14s %14s %7s %12s %12s %7s" % ("test", "redis req/s", "ckpt req/s", "ratio", "redis ns/req",
                                                   "ckpt ns/req", "cpu x"))
    worst = 10.0
    for t in TESTS:
        (ra, rc_), (ca, cc) = best[(t, "redis")], best[(t, "ckpt")]
        ratio = ca / ra if ra else 0
        worst = min(worst, ratio)
        print("%-12s %14.0f %14.0f %7.2f %12.0f %12.0f %7.2f" % (t, ra, ca, ratio, rc_, cc, cc / rc_ if rc_ else 0))
    print("worst throughput ratio %.2f (machine load %s)" % (worst, open("/proc/loadavg").read().split()[0]))
    rs.stop()


def main():
    compare = "--compare" in sys.argv
    n = 20000
    if "-n" in sys.argv:
        n = int(sys.argv[sys.argv.index("-n") + 1])
    ck = Server(args=["--save", "", "--heap-size", "1gb"])
    rc, rates, problems = run_benchmark(ck.port, n)
    check(rc == 0, "redis-benchmark exited %d" % rc)
    check(not problems, "redis-benchmark printed: %r" % problems[:10])
    missing = [t for t in EXPECTED if t not in rates]
    check(not missing, "tests missing from the output: %r (got %r)" % (missing, list(rates)))
    check(ck.alive(), "server died")
    for t in EXPECTED:
        print("  %-40s %10.0f req/s" % (t, rates[t]))
    print("ok: redis-benchmark -q -n %d: %d tests, no errors" % (n, len(EXPECTED)))
    if compare:
        compare_with_redis(ck, n)
    ck.stop()
    print("PASS bench")


if __name__ == "__main__":
    main()
