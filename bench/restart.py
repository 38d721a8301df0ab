#!/usr/bin/env python3
"""bench/restart.py - instant restart (issue 12): time from process start to
the first reply to a GET of a real key, for redis-ckpt --restore lazy,
redis-ckpt --restore eager and redis-server loading its RDB, with the same
dataset (random 4 KB values) at each size; for the lazy restart also the
background full-residency rate (heap bytes / warm-up time, from the
server's "Warm-up done" log line) and an open-loop GET probe during the
warm-up, each request charged from its scheduled send time, against the
same probe on the same server once resident.  The images and the RDB are
read from the page cache (each is read once before the timed runs).

  bench/restart.py [--sizes 512m,2g] [--reps 3] [--rate 2000] [--out FILE] [--plot PNG]
  bench/restart.py --compare OTHER-REDIS-CKPT [--sizes ...] [--reps N]

--compare: lazy restarts only, this tree's redis-ckpt and OTHER (e.g. main's
build) alternating on the same image (which goes first alternates too),
each with its first reply, ckpt_restore(), residency rate, the probe's
p99 warming / steady, the load average and the server's start-up timeline
(exec->main(), restore->first reply) beside each run; then the medians.

Prints a markdown table; every server is stopped on exit.  Loopback only.
"""
import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RC = os.path.join(ROOT, "examples", "redis-ckpt", "redis-ckpt")
VSIZE = 4000
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def enc(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port, timeout=60):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(1 << 20)
            if not d:
                raise OSError("closed")
            self.buf += d
        i = self.buf.index(b"\r\n")
        ln, self.buf = self.buf[:i], self.buf[i + 2:]
        return ln

    def reply(self):
        ln = self._line()
        if ln[:1] == b"$":
            n = int(ln[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                d = self.s.recv(1 << 20)
                if not d:
                    raise OSError("closed")
                self.buf += d
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        return ln

    def call(self, *a):
        self.s.sendall(enc(*a))
        return self.reply()

    def close(self):
        self.s.close()


def value(i, pool):
    return b"%09d" % i + pool[i % len(pool)]


def populate(port, nkeys, pool):
    c = Conn(port, timeout=900)
    for base in range(0, nkeys, 500):
        n = min(500, nkeys - base)
        c.s.sendall(b"".join(enc("SET", "k:%d" % i, value(i, pool)) for i in range(base, base + n)))
        for _ in range(n):
            c.reply()
    r = c.call("SAVE")
    assert r == b"+OK", r
    c.s.sendall(enc("SHUTDOWN", "NOSAVE"))
    c.close()


def start(kind, d, port, extra=(), binary=None):
    log = os.path.join(d, "server.log")
    if kind == "rs":
        cmd = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "",
               "--appendonly", "no", "--logfile", log, "--daemonize", "no"]
    else:
        cmd = [binary or RC, "--port", str(port), "--bind", "127.0.0.1", "--dir", d, "--save", "", "--logfile", log]
    p = subprocess.Popen(cmd + list(extra), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    procs.append(p)
    return p


def stop(p, port):
    try:
        c = Conn(port, timeout=5)
        c.s.sendall(enc("SHUTDOWN", "NOSAVE"))
        c.close()
    except OSError:
        pass
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def first_reply(kind, d, nkeys, pool, extra=(), binary=None):
    """ms from Popen to the first correct GET reply, with the process left running."""
    port = free_port()
    key = random.randrange(nkeys)
    want = value(key, pool)
    t0 = time.monotonic()
    first_reply.t0_ns = time.monotonic_ns()
    p = start(kind, d, port, extra, binary)
    end = t0 + 600
    while time.monotonic() < end:
        try:
            c = Conn(port, timeout=600)
        except OSError:
            time.sleep(0.0002)
            continue
        try:
            while True:
                r = c.call("GET", "k:%d" % key)
                if r == want:
                    return (time.monotonic() - t0) * 1000, p, port, c
                if not (r or b"").startswith(b"-LOADING"):
                    raise RuntimeError("%s: GET gave %r" % (kind, (r or b"")[:80]))
                time.sleep(0.0002)
        except OSError:
            c.close()
    raise RuntimeError("%s: no reply in 600 s" % kind)


def probe(c, nkeys, pool, rate, until, max_s):
    """Open-loop GETs at @rate/s until until() or max_s: latencies in us,
    each from its scheduled send time."""
    lat = []
    gap = 1.0 / rate
    t = time.monotonic()
    end = t + max_s
    n = 0
    while t < end:
        now = time.monotonic()
        if now < t:
            time.sleep(t - now)
        k = random.randrange(nkeys)
        r = c.call("GET", "k:%d" % k)
        if r != value(k, pool):
            raise RuntimeError("probe: wrong value for k:%d" % k)
        lat.append((time.monotonic() - t) * 1e6)
        t += gap
        n += 1
        if n % 50 == 0 and until():
            break
    return lat


def pct(v, q):
    if not v:
        return float("nan")
    s = sorted(v)
    return s[min(len(s) - 1, int(q * len(s)))]


def timeline(d, t0_ns):
    """redis-ckpt's start-up timeline (its log, CLOCK_MONOTONIC like
    time.monotonic_ns()) against our start: ms from Popen to main(), in
    ckpt_restore(), and from its return to the first reply written."""
    with open(os.path.join(d, "server.log"), errors="replace") as f:
        m = re.findall(r"main (\d+) restore (\d+)\+(\d+) listening (\d+) first reply (\d+)", f.read())
    if not m:
        return None
    mn, rs, rd, _ls, fr = map(int, m[-1])
    return ((mn - t0_ns) / 1e6, rd / 1e6, (fr - rs - rd) / 1e6)


def warm_ms(d):
    with open(os.path.join(d, "server.log"), errors="replace") as f:
        m = re.findall(r"Warm-up done: (\d+) pages resident ([\d.]+) ms", f.read())
    return (int(m[-1][0]), float(m[-1][1])) if m else (0, 0.0)


def restore_ms(d):
    """the server's own figure for its last restore (ckpt_restore() alone)"""
    with open(os.path.join(d, "server.log"), errors="replace") as f:
        m = re.findall(r"DB loaded from checkpoint image [^:]*: ([\d.]+) ms", f.read())
    return float(m[-1]) if m else float("nan")


def info(c):
    r = c.call("INFO", "persistence").decode(errors="replace")
    return dict(ln.split(":", 1) for ln in r.split("\r\n") if ":" in ln and not ln.startswith("#"))


def cat(path):
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def load1():
    return os.getloadavg()[0]


def stop_all(work):
    """Kills every server still running and removes the work directory."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(work, ignore_errors=True)


def saved_dataset(kind, d, size, nkeys, pool):
    """A server of @kind ("rc": redis-ckpt, its heap twice @size; "rs":
    redis-server) in @d, given @nkeys keys; populate() saves and shuts it
    down, so its image or RDB is in @d when this returns."""
    port = free_port()
    extra = ["--heap-size", "%dm" % (size * 2 // (1 << 20) + 256)] if kind == "rc" else []
    p = start(kind, d, port, extra)
    time.sleep(0.3)
    populate(port, nkeys, pool)
    p.wait(timeout=120)


def warmup_probe(c, port, nkeys, pool, rate):
    """The open-loop GET probe on connection @c while a lazy restart warms
    up (until INFO says it is resident, 120 s at most), then 2 s of it once
    resident: (latencies warming, latencies steady)."""
    ic = Conn(port)
    during = probe(c, nkeys, pool, rate, lambda: info(ic).get("ckpt_restore_status") != "warming", 120)
    end = time.time() + 120
    while info(ic).get("ckpt_restore_status") == "warming" and time.time() < end:
        time.sleep(0.01)
    steady = probe(c, nkeys, pool, rate, lambda: False, 2)
    ic.close()
    return during, steady


def compare_size(size, reps, rate, work, other):
    """Lazy restarts of this tree's redis-ckpt and @other alternating:
    one row per run."""
    nkeys = size // (VSIZE + 100)
    pool = [os.urandom(VSIZE // 2).hex().encode()[:VSIZE - 9] for _ in range(4096)]
    dc = os.path.join(work, "ckpt")
    os.makedirs(dc, exist_ok=True)
    saved_dataset("rc", dc, size, nkeys, pool)
    image = os.path.join(dc, "dump.ckpt")
    cat(image)
    rows = []
    for k in range(reps):
        order = (("this", RC), ("other", other))
        for name, binp in (order if k % 2 == 0 else order[::-1]):
            t = time.monotonic()
            subprocess.run(["cat", image], stdout=subprocess.DEVNULL, check=True)
            catgbs = os.path.getsize(image) / (time.monotonic() - t) / 1e9
            la = load1()
            ms, p, port, c = first_reply("rc", dc, nkeys, pool, ["--restore", "lazy"], binp)
            t0_ns = first_reply.t0_ns
            during, steady = warmup_probe(c, port, nkeys, pool, rate)
            c.close()
            stop(p, port)
            pages, wms = warm_ms(dc)
            gbs = pages * 4096 / (wms / 1000) / 1e9 if wms else float("nan")
            # read once the server is gone: it logs the line after the reply
            tl = timeline(dc, t0_ns) or (float("nan"), ) * 3
            rows.append((name, ms, restore_ms(dc), gbs, catgbs, pct(during, 0.99), pct(steady, 0.99), la) + tl)
            print("%s %s: first reply %.1f ms, ckpt_restore() %.1f ms, residency %.2f GB/s (cat %.2f), "
                  "p99 warming %.0f / steady %.0f us, load %.2f; exec->main %.1f, restore %.1f, "
                  "restore->reply %.1f ms" % ((size, ) + rows[-1]), file=sys.stderr)
    return rows


def compare_main(a):
    work = tempfile.mkdtemp(prefix="ckpt-restart-")
    lines = ["## Lazy restart: this tree (`this`) against `%s` (`other`), alternating" % a.compare, "",
             "| dataset | binary | first reply ms | ckpt_restore() ms | residency GB/s | `cat` GB/s | "
             "p99 warming us | p99 steady us | load (1 min) | exec->main() ms | restore->reply ms |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    meds = []
    try:
        for s in a.sizes.split(","):
            rows = compare_size(parse_size(s), a.reps, a.rate, work, a.compare)
            for r in rows:
                lines.append("| %s | %s | %.1f | %.1f | %.2f | %.2f | %.0f | %.0f | %.2f | %.1f | %.1f |" % (
                    (s, ) + r[:9] + r[10:]))
            for name in ("this", "other"):
                v = [r for r in rows if r[0] == name]
                med = [sorted(x[i] for x in v)[len(v) // 2] for i in (1, 2, 3, 4, 5, 6, 7, 8, 10)]
                meds.append("| %s | %s (median of %d) | %.1f | %.1f | %.2f | %.2f | %.0f | %.0f | %.2f | %.1f | %.1f |" % (
                    (s, name, len(v)) + tuple(med)))
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work, exist_ok=True)
    finally:
        stop_all(work)
    text = "\n".join(lines + meds) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


def one_size(size, reps, rate, work):
    nkeys = size // (VSIZE + 100)
    pool = [os.urandom(VSIZE // 2).hex().encode()[:VSIZE - 9] for _ in range(4096)]
    dc, dr = os.path.join(work, "ckpt"), os.path.join(work, "rs")
    os.makedirs(dc, exist_ok=True)
    os.makedirs(dr, exist_ok=True)
    saved_dataset("rc", dc, size, nkeys, pool)
    saved_dataset("rs", dr, size, nkeys, pool)
    cat(os.path.join(dc, "dump.ckpt"))
    cat(os.path.join(dr, "dump.rdb"))
    res = {"size": size, "keys": nkeys, "image": os.path.getsize(os.path.join(dc, "dump.ckpt")),
           "rdb": os.path.getsize(os.path.join(dr, "dump.rdb"))}
    # what reading the image costs here and now: the residency's yardstick
    t = time.monotonic()
    subprocess.run(["cat", os.path.join(dc, "dump.ckpt")], stdout=subprocess.DEVNULL, check=True)
    res["cat"] = res["image"] / (time.monotonic() - t) / 1e9
    for name, kind, d, extra in (("lazy", "rc", dc, ["--restore", "lazy"]),
                                 ("eager", "rc", dc, ["--restore", "eager"]),
                                 ("redis-server", "rs", dr, [])):
        times = []
        for _ in range(reps):
            ms, p, port, c = first_reply(kind, d, nkeys, pool, extra)
            times.append(ms)
            if kind == "rc":
                res.setdefault(name + "-restore", []).append(restore_ms(d))
            if name == "lazy" and "warm" not in res:
                during, steady = warmup_probe(c, port, nkeys, pool, rate)
                pages, wms = warm_ms(d)
                res["warm"] = (pages, wms, during, steady)
            c.close()
            stop(p, port)
            if name == "lazy":
                tl = timeline(d, first_reply.t0_ns)
                if tl:
                    res.setdefault("timeline", []).append(tl)
        res[name] = times
    return res


def parse_size(s):
    m = re.fullmatch(r"(\d+)([mMgG])", s)
    return int(m.group(1)) << (20 if m.group(2) in "mM" else 30)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="512m,2g")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--out", default=None)
    ap.add_argument("--compare", default=None, help="another redis-ckpt binary: lazy restarts alternating")
    ap.add_argument("--plot", default=None, help="PNG: first reply against image size (gnuplot)")
    a = ap.parse_args()
    if a.compare:
        if not os.access(RC, os.X_OK) or not os.access(a.compare, os.X_OK):
            sys.exit("needs examples/redis-ckpt/redis-ckpt (make) and %s" % a.compare)
        return compare_main(a)
    if not os.access(RC, os.X_OK) or not shutil.which("redis-server"):
        sys.exit("needs examples/redis-ckpt/redis-ckpt (make) and redis-server")
    work = tempfile.mkdtemp(prefix="ckpt-restart-")
    notes, points = [], []
    lines = ["## Restart: process start to first GET reply (ms, median of %d; page cache warm; machine shared)" % a.reps,
             "",
             "| dataset | keys | image / RDB | lazy | eager | redis-server RDB | lazy / eager | lazy / redis-server "
             "| ckpt_restore() lazy / eager | warm-up (lazy) | residency GB/s (`cat` image) | probe p99 warming / steady (us) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    try:
        for s in a.sizes.split(","):
            r = one_size(parse_size(s), a.reps, a.rate, work)
            med = {k: sorted(r[k])[len(r[k]) // 2] for k in ("lazy", "eager", "redis-server")}
            points.append((r["image"], med["lazy"], med["eager"], med["redis-server"]))
            pages, wms, during, steady = r["warm"]
            gbs = pages * 4096 / (wms / 1000) / 1e9 if wms else float("nan")
            rl = sorted(r["lazy-restore"])[len(r["lazy-restore"]) // 2]
            re_ = sorted(r["eager-restore"])[len(r["eager-restore"]) // 2]
            lines.append("| %s | %d | %.0f / %.0f MB | %.1f | %.1f | %.1f | %.3f | %.3f | %.1f / %.1f ms | %.0f ms (%d pages) | %.2f (%.2f) | %.0f / %.0f |" % (
                s, r["keys"], r["image"] / 1e6, r["rdb"] / 1e6, med["lazy"], med["eager"], med["redis-server"],
                med["lazy"] / med["eager"], med["lazy"] / med["redis-server"], rl, re_, wms, pages, gbs, r["cat"],
                pct(during, 0.99), pct(steady, 0.99)))
            print(lines[-1], file=sys.stderr)
            print("size %s: all runs %r" % (s, {k: ["%.1f" % x for x in r[k]] for k in ("lazy", "eager", "redis-server")}),
                  file=sys.stderr)
            if r.get("timeline"):
                notes.append("%s lazy start-up (ms: exec->main() / ckpt_restore() / its return->first reply written): %s" % (
                    s, ", ".join("%.1f / %.1f / %.1f" % t for t in r["timeline"])))
            shutil.rmtree(work, ignore_errors=True)
            os.makedirs(work, exist_ok=True)
    finally:
        stop_all(work)
    text = "\n".join(lines + [""] + notes) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    if a.plot and points:
        plot(points, a.plot)


def plot(points, png):
    """First reply (ms, log scale) against the image's size: lazy, eager
    and redis-server's RDB load, medians, one point per size."""
    if not shutil.which("gnuplot"):
        print("no gnuplot: %s not written" % png, file=sys.stderr)
        return
    dat = png + ".dat"
    with open(dat, "w") as f:
        f.write("# image_GB lazy_ms eager_ms redis_server_ms\n")
        for img, lz, eg, rs in points:
            f.write("%.3f %.2f %.2f %.2f\n" % (img / 1e9, lz, eg, rs))
    script = """set terminal pngcairo size 900,560
set output '%s'
set title 'Restart: process start to first GET reply (median)'
set xlabel 'image size (GB)'
set ylabel 'ms (log scale)'
set logscale y
set grid
set key center right box opaque
set yrange [1:*]
plot '%s' using 1:2 with linespoints lw 2 title 'redis-ckpt --restore lazy', \\
     '' using 1:3 with linespoints lw 2 title 'redis-ckpt --restore eager', \\
     '' using 1:4 with linespoints lw 2 title 'redis-server (RDB load)', \\
     10 with lines dt 2 lw 2 lc rgb 'red' title 'target: 10 ms'
""" % (png, dat)
    subprocess.run(["gnuplot"], input=script.encode(), check=False)


if __name__ == "__main__":
    main()
