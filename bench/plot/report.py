#!/usr/bin/env python3
"""report.py - turns bench/run.sh's raw output into the results file.

    report.py --raw DIR --out FILE.md --name NAME

Reads the key=value lines the benchmark programs print (DIR/*.txt), and
writes a Markdown file: a summary table (the goals of issue 6, each marked
met / missed with the measured ratio), then every figure, each comparison
also as a ratio to its baseline.  Missing inputs (a benchmark that could not
run, e.g. before libckpt's engine existed) show as "n/a" and their goals as
"not measured" - never as met.
"""
import argparse
import glob
import os
import re
import sys


def parse(path):
    """List of dicts, one per line of the form 'prog [tag] k=v k=v ...'."""
    rows = []
    if not os.path.exists(path):
        return rows
    with open(path, errors="replace") as f:
        for line in f:
            toks = line.split()
            if not toks:
                continue
            d = {"_prog": toks[0], "_tags": [], "_line": line.rstrip("\n")}
            for t in toks[1:]:
                if "=" in t:
                    k, v = t.split("=", 1)
                    try:
                        d[k] = float(v)
                    except ValueError:
                        d[k] = v
                else:
                    d["_tags"].append(t)
            rows.append(d)
    return rows


def fmt_ns(ns):
    if ns is None:
        return "n/a"
    if ns >= 1e6:
        return "%.1f ms" % (ns / 1e6)
    if ns >= 1e3:
        return "%.2f us" % (ns / 1e3)
    return "%.0f ns" % ns


def fmt_ratio(r):
    return "n/a" if r is None else "%.2fx" % r


def fmt_bytes(b):
    if b is None:
        return "n/a"
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= div:
            return "%.1f %s" % (b / div, unit)
    return "%d B" % b


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


class Report:
    def __init__(self, raw, name):
        self.raw = raw
        self.name = name
        self.goals = []  # (goal, measured, target, verdict)
        self.out = []

    def p(self, s=""):
        self.out.append(s)

    def goal(self, text, value, limit, fmt, detail="", higher_is_better=False):
        """value/limit are ratios (or None when not measured)."""
        if value is None:
            verdict = "not measured"
        else:
            ok = value >= limit if higher_is_better else value <= limit
            if ok:
                verdict = "**met**"
            else:
                # by how much: the factor to the target
                f = (limit / value) if higher_is_better else (value / limit)
                verdict = "**missed** (%.2fx off)" % f
        self.goals.append((text, fmt(value) if value is not None else "n/a",
                           ("<= " if not higher_is_better else ">= ") + fmt(limit),
                           verdict, detail))


# ---------------------------------------------------------------- issue 10
LOADED_MODES = ("ckpt-thread", "ckpt-sigbus", "ckpt-fork")


def loaded_parse(raw):
    """{server: [run, ...]}; a run is {"before": row, "after": row,
    "snapshot": row, "memory": row, "info": row} from loaded-SERVER.txt."""
    out = {}
    for path in sorted(glob.glob(os.path.join(raw, "loaded-*.txt"))):
        nm = os.path.basename(path)[len("loaded-"):-len(".txt")]
        runs = []
        for r in parse(path):
            if r["_prog"] == "loaded" and "rep" in r:
                runs.append({})
            elif runs and r["_prog"] == "loadgen":
                if r.get("window") in ("before", "after"):
                    runs[-1][r["window"]] = r
                elif r["_tags"] and r["_tags"][0] in ("snapshot", "memory", "info"):
                    runs[-1][r["_tags"][0]] = r
        out[nm] = runs
    return out


def LV(run, sec, key):
    v = (run or {}).get(sec, {}).get(key)
    return v if isinstance(v, float) else None


def median(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def loaded_ratios(ld, nm, i):
    """The issue's four ratios for run i of server nm (None: not measured);
    redis-server's run of the same index is the baseline (its median when it
    has fewer runs)."""
    run = ld[nm][i]
    srv = ld.get("server", [])
    base = srv[i] if i < len(srv) else None

    def b(sec, key):
        if base is not None:
            return LV(base, sec, key)
        return median([LV(x, sec, key) for x in srv])
    return {
        "p99_after_before": ratio(LV(run, "after", "p99_us"), LV(run, "before", "p99_us")),
        "max_after_before": ratio(LV(run, "after", "max_us"), LV(run, "before", "max_us")),
        "p99_vs_server": ratio(LV(run, "after", "p99_us"), b("after", "p99_us")),
        "max_vs_server": ratio(LV(run, "after", "max_us"), b("after", "max_us")),
        "mem_vs_server": ratio(LV(run, "memory", "extra_kb"), b("memory", "extra_kb")),
    }


LOADED_TARGETS = (("p99_after_before", "p99 after / before BGSAVE", 1.2),
                  ("max_after_before", "max after / before BGSAVE", 1.2),
                  ("p99_vs_server", "p99 after BGSAVE / redis-server's", 0.25),
                  ("max_vs_server", "max after BGSAVE / redis-server's", 0.25),
                  ("mem_vs_server", "extra memory / redis-server's", 0.1))


def loaded_goals(R, ld):
    for nm in LOADED_MODES:
        if nm not in ld:
            continue
        for key, text, lim in LOADED_TARGETS:
            vals = [loaded_ratios(ld, nm, i)[key] for i in range(len(ld[nm]))]
            R.goal("loaded server (issue 10), redis-%s: %s (median of %d runs)" % (nm, text, len(vals)),
                   median(vals), lim, fmt_ratio,
                   "runs: " + ", ".join(fmt_ratio(v) for v in vals))
    if not any(nm in ld for nm in LOADED_MODES):
        R.goal("loaded server (issue 10): redis-ckpt vs redis-server", None, 0.25, fmt_ratio,
               "the loaded section did not run")


def mark(v, lim):
    return "n/a" if v is None else "%s %s" % (fmt_ratio(v), "met" if v <= lim else "**missed**")


def loaded_write(R, ld, env, name):
    R.p("### 7. Loaded server: a snapshot under load (issue 10, `bench/run.sh` loaded)")
    R.p()
    R.p("%s keys of 100 bytes (`key:%%012d`, loaded pipelined), a writer overwriting random existing keys "
        "(`redis-benchmark -t set -r N -d 100 -c 4`), an open-loop probe at %s SET/s (latency from each "
        "probe's scheduled send time), BGSAVE; `before` / `after` = the probes scheduled in the %s s "
        "before BGSAVE and the %s s from it. Extra memory = peak Pss of the server's processes minus Pss "
        "before BGSAVE. Servers run one after the other; each run is reported."
        % (env.get("loaded_keys", "?"), env.get("loaded_probe_rate", "?"),
           env.get("loaded_window_s", "?"), env.get("loaded_window_s", "?")))
    R.p()
    for nm in sorted(ld, key=lambda k: (k != "server", k)):
        R.p("#### %s" % ("redis-server 7.0 (fork BGSAVE)" if nm == "server" else "redis-" + nm))
        R.p()
        R.p("| run | window | count | p50 | p99 | p99.9 | max | snapshot | extra memory | pause (INFO) |")
        R.p("|---|---|---|---|---|---|---|---|---|---|")
        for i, run in enumerate(ld[nm]):
            for w in ("before", "after"):
                r = run.get(w)
                if not r:
                    R.p("| %d | %s | n/a | | | | | | | |" % (i + 1, w))
                    continue
                us = lambda k: fmt_ns(r[k] * 1e3) if isinstance(r.get(k), float) else "n/a"
                pause = LV(run, "info", "ckpt_pause_us")
                if pause is None:
                    pause = LV(run, "info", "latest_fork_usec")
                prep = LV(run, "info", "ckpt_prepare_us")
                R.p("| %d | %s | %d | %s | %s | %s | %s | %s | %s | %s |" % (
                    i + 1, w, r.get("count", 0), us("p50_us"), us("p99_us"), us("p999_us"), us("max_us"),
                    ("%.0f ms (%s)" % (LV(run, "snapshot", "duration_ms"), run["snapshot"].get("status"))
                     if w == "after" and LV(run, "snapshot", "duration_ms") is not None else ""),
                    (fmt_bytes(LV(run, "memory", "extra_kb") * 1024)
                     if w == "after" and LV(run, "memory", "extra_kb") is not None else ""),
                    ("%s%s" % (fmt_ns(pause * 1e3), "" if prep is None else " (prepare %s)" % fmt_ns(prep * 1e3)))
                    if w == "after" and pause is not None else ""))
        R.p()
        if nm != "server":
            R.p("| run | " + " | ".join("%s (<= %.2fx)" % (t, lim) for _, t, lim in LOADED_TARGETS) + " |")
            R.p("|---|" + "---|" * len(LOADED_TARGETS))
            for i in range(len(ld[nm])):
                rr = loaded_ratios(ld, nm, i)
                R.p("| %d | %s |" % (i + 1, " | ".join(mark(rr[k], lim) for k, _, lim in LOADED_TARGETS)))
            R.p()
        for i, run in enumerate(ld[nm]):
            info = run.get("info", {})
            fields = ["%s=%s" % (k, info[k] if not isinstance(info[k], float) else "%.0f" % info[k])
                      for k in info if not k.startswith("_")]
            R.p("- run %d, INFO persistence: `%s`" % (i + 1, " ".join(fields) or "n/a"))
        R.p()
        R.p("![latency over time, %s](%s-loaded-%s.png)" % (nm, name, nm))
        R.p()


def pause_loaded_parse(raw):
    rows = [r for r in parse(os.path.join(raw, "pause-loaded.txt")) if "method" in r and "ns" in r]
    unavail = [r["_line"] for r in parse(os.path.join(raw, "pause-loaded.txt")) if "unavailable:" in r["_line"]]
    return rows, unavail


def PL(rows, method, size, key="ns"):
    for r in rows:
        if r["method"] == method and int(r["size"]) == size:
            v = r.get(key)
            return v if isinstance(v, float) and v >= 0 else None
    return None


def PP(rows, method, size):
    """The pause: the library's pause_ns where it reports one, else the
    call's wall time (fork)."""
    v = PL(rows, method, size, "stats_pause_ns")
    return v if v is not None else PL(rows, method, size)


def pause_loaded_goals(R, rows):
    sizes = sorted({int(r["size"]) for r in rows})
    for s in sizes:
        gib = s / float(1 << 30)
        cut = PL(rows, "ckpt-cut", s, "stats_pause_ns")
        R.goal("pause at the cut per GiB, writer dirtying pages, %s heap (issue 10; ms/GiB)" % fmt_bytes(s),
               cut / 1e6 / gib if cut is not None else None, 0.5, lambda v: "%.2f" % v,
               "cut %s (ckpt_cut call %s), full protect %s (ckpt_begin call %s), fork %s; writer %s pages/s" % (
                   fmt_ns(cut), fmt_ns(PL(rows, "ckpt-cut", s)), fmt_ns(PP(rows, "ckpt-full", s)),
                   fmt_ns(PL(rows, "ckpt-full", s)),
                   fmt_ns(PL(rows, "fork", s)), "n/a" if PL(rows, "ckpt-cut", s, "dirty_rate") is None else
                   "%.0f" % PL(rows, "ckpt-cut", s, "dirty_rate")))
        for m in ("ckpt-incr1", "ckpt-incr1-cut"):
            if PL(rows, m, s) is None and m.endswith("-cut"):
                continue
            R.goal("incremental pause, 1%% dirty at random, %s vs fork() of the same size, %s heap (issue 10)"
                   % (m, fmt_bytes(s)), ratio(PP(rows, m, s), PL(rows, "fork", s)), 0.05, fmt_ratio,
                   "pause_ns %s (the call: %s) vs fork %s" % (fmt_ns(PP(rows, m, s)), fmt_ns(PL(rows, m, s)),
                                                              fmt_ns(PL(rows, "fork", s))))
    if not sizes:
        R.goal("pause at the cut per GiB, writer dirtying pages (issue 10; ms/GiB)", None, 0.5,
               lambda v: "%.2f" % v, "pause --loaded did not run")


def restart_write(R, raw, outdir, name):
    """bench/restart.py's table (issue 12) and its plot, as it wrote them."""
    md = os.path.join(raw, "restart.md")
    if not os.path.exists(md):
        return
    R.p("### 9. Restart: process start to first reply (issue 12, `bench/restart.py`)")
    R.p()
    R.p(open(md, errors="replace").read().rstrip().replace("## Restart:", "Restart:", 1))
    R.p()
    if os.path.exists(os.path.join(outdir, "%s-restart.png" % name)):
        R.p("![First reply against image size](%s-restart.png)" % name)
        R.p()


def pause_loaded_write(R, rows, unavail, name):
    R.p("### 8. Pause against heap size with a writer dirtying random pages (issue 10, `bench/pause --loaded`)")
    R.p()
    R.p("A thread writes one byte to random pages of the heap throughout (its achieved rate in "
        "pages/s is shown). fork: fork() of an equal touched anonymous heap; ckpt-full: `ckpt_begin()`, whose "
        "pause is the full write-protect; ckpt-cut: `ckpt_prepare()`, then `ckpt_cut()` when `ckpt_ready()`; "
        "ckpt-incr1(-cut): incremental after 1% of pages dirtied at random, writer stopped. "
        "`pause` = wall time of the call that stops the application (fork, ckpt_begin, ckpt_cut): for "
        "`ckpt_begin()` it includes the preparation it does synchronously; "
        "`pause_ns` = `ckpt_stats()`, the protect at the cut; ms/GiB, the goals and the plot use pause_ns where "
        "the library reports it, else the call's wall time. "
        "Medians of the repetitions.")
    R.p()
    R.p("| heap | method | pause | pause_ns | ms/GiB | pause / fork() | writer pages/s | prepare | prep traps | "
        "prep trap p50 / p99 | pages left for the cut |")
    R.p("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = int(r["size"])
        sp = r.get("stats_pause_ns", -1)
        pv = sp if isinstance(sp, float) and sp >= 0 else r["ns"]
        R.p("| %s | %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %s |" % (
            fmt_bytes(s), r["method"], fmt_ns(r["ns"]), "-" if sp is None or sp < 0 else fmt_ns(sp),
            pv / 1e6 / (s / float(1 << 30)), fmt_ratio(ratio(pv, PL(rows, "fork", s))),
            ("%.0f" % r["dirty_rate"] if r.get("dirty_rate") else "-") +
            (" (%.0f during preparation)" % r["prep_dirty_rate"] if r.get("prep_dirty_rate") else ""),
            fmt_ns(r["prepare_ns"]) if "prepare_ns" in r else "-",
            "%.0f" % r["prep_traps"] if "prep_traps" in r else "-",
            "%s / %s" % (fmt_ns(r["prep_p50_ns"]), fmt_ns(r["prep_p99_ns"])) if r.get("prep_p50_ns", -1) >= 0 else "-",
            "%.0f" % r["cut_pages"] if "cut_pages" in r else "-"))
    for l in unavail:
        R.p("- `%s`" % l)
    R.p()
    R.p("![pause vs heap size, loaded](%s-pause-loaded.png)" % name)
    R.p()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--name", required=True)
    a = ap.parse_args()
    raw = a.raw
    R = Report(raw, a.name)

    # env.txt: one "key=value with spaces" per line
    env = {}
    for line in open(os.path.join(raw, "env.txt")):
        line = line.strip()
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    for tok in re.findall(r"(redis_keys|redis_rate|redis_reps|loaded_keys|loaded_reps|loaded_window_s|"
                          r"loaded_probe_rate|pause_loaded_sizes)=(\S+)",
                          open(os.path.join(raw, "env.txt")).read()):
        env[tok[0]] = tok[1]

    # ------------------------------------------------------------ faultlat
    fl = [r for r in parse(os.path.join(raw, "faultlat.txt")) if "mode" in r and "p50" in r]
    fl_unavail = [r["_line"] for r in parse(os.path.join(raw, "faultlat.txt"))
                  if "unavailable:" in r["_line"] or "failed:" in r["_line"]]

    def F(mode, pat="seq", fa=1, key="p50"):
        for r in fl:
            if r["mode"] == mode and r["pattern"] == pat and int(r["fa"]) == fa:
                return r.get(key)
        return None

    fork50 = F("fork")
    mprot50 = F("mprotect")
    sig50 = F("ckpt-sigbus")
    thr50 = F("ckpt-thread")
    poll50 = F("ckpt-poll")
    default_fa = 16
    # CPU time per page: wall-clock windows on a loaded 2-core VM include
    # run-queue waits of milliseconds, which are not the mechanism's cost
    sig_amort = F("ckpt-sigbus", "seq", default_fa, "amort_cpu")
    R.goal("SIGBUS trap p50 vs fork COW fault (seq, fault-around off)", ratio(sig50, fork50), 0.6,
           fmt_ratio, "%s vs %s" % (fmt_ns(sig50), fmt_ns(fork50)))
    R.goal("SIGBUS trap p50 vs mprotect+SIGSEGV (seq, fault-around off)", ratio(sig50, mprot50), 1.5,
           fmt_ratio, "%s vs %s" % (fmt_ns(sig50), fmt_ns(mprot50)))
    R.goal("SIGBUS amortized CPU cost/page written, fault-around %d, vs fork COW p50 (seq)" % default_fa,
           ratio(sig_amort, fork50), 0.2, fmt_ratio, "%s vs %s" % (fmt_ns(sig_amort), fmt_ns(fork50)))
    R.goal("handler-thread (blocking) p50 vs SIGBUS p50", ratio(thr50, sig50), 2.5, fmt_ratio,
           "%s vs %s" % (fmt_ns(thr50), fmt_ns(sig50)))
    R.goal("handler-thread (busy-poll) p50 vs SIGBUS p50", ratio(poll50, sig50), 2.5, fmt_ratio,
           "%s vs %s" % (fmt_ns(poll50), fmt_ns(sig50)))

    # ------------------------------------------------------------ pause
    pa = [r for r in parse(os.path.join(raw, "pause.txt")) if "method" in r and "ns" in r]
    pa_unavail = [r["_line"] for r in parse(os.path.join(raw, "pause.txt")) if "unavailable:" in r["_line"]]
    sizes = sorted({int(r["size"]) for r in pa})

    def P(method, size):
        for r in pa:
            if r["method"] == method and int(r["size"]) == size:
                return r["ns"]
        return None

    for s in sizes:
        R.goal("full-snapshot pause vs fork(), %s heap" % fmt_bytes(s), ratio(P("ckpt-full", s), P("fork", s)),
               1.0, fmt_ratio, "%s vs %s" % (fmt_ns(P("ckpt-full", s)), fmt_ns(P("fork", s))))
        R.goal("incremental (1%% dirty) pause vs fork(), %s heap" % fmt_bytes(s),
               ratio(P("ckpt-incr1", s), P("fork", s)), 0.05, fmt_ratio,
               "%s vs %s" % (fmt_ns(P("ckpt-incr1", s)), fmt_ns(P("fork", s))))

    # ------------------------------------------------------------ memory
    mg = {r["method"]: r for r in parse(os.path.join(raw, "memgrowth.txt")) if "peak_bytes" in r}
    mg_unavail = [r["_line"] for r in parse(os.path.join(raw, "memgrowth.txt")) if "unavailable:" in r["_line"]]
    ck = mg.get("ckpt")
    fk = mg.get("fork")
    R.goal("libckpt extra memory vs its pool cap (write-everything)",
           ratio(ck["peak_bytes"], ck["pool_cap"]) if ck else None, 1.0, fmt_ratio,
           "%s peak, cap %s" % (fmt_bytes(ck["peak_bytes"]), fmt_bytes(ck["pool_cap"])) if ck else "")
    R.goal("fork extra memory / pages written during the snapshot",
           ratio(fk["peak_bytes"], fk["written_bytes"]) if fk else None, 0.5, fmt_ratio,
           ("%s copied for %s written (the goal's other half: fork grows by the written set)"
            % (fmt_bytes(fk["peak_bytes"]), fmt_bytes(fk["written_bytes"])))
           if fk else "", higher_is_better=True)

    # ------------------------------------------------------------ throughput
    tp = [r for r in parse(os.path.join(raw, "throughput.txt")) if "ckpt_mibs" in r]
    tp_unavail = [r["_line"] for r in parse(os.path.join(raw, "throughput.txt")) if "unavailable" in r["_line"]]
    dd = [r["mibs"] for r in parse(os.path.join(raw, "dd.txt")) if "mibs" in r]
    dd_med = sorted(dd)[len(dd) // 2] if dd else None

    def T(data, codec, key="ckpt_mibs"):
        for r in tp:
            if r["data"] == data and r["codec"] == codec:
                return r[key]
        return None

    # issue 12's goals, from the paired runs (checkpoint and dd back to back;
    # the disk's speed moves 3x between minutes here): median of the ratios
    pairs = parse(os.path.join(raw, "throughput-pairs.txt"))

    # io: "buffered" (page cache) or "direct" (CKPT_BEGIN_DIRECT / dd
    # oflag=direct); dd_io: the dd run to compare with (default: the same)
    def pair_ratios(codec, fs="disk", io="buffered", dd_io=None):
        out = []
        for i in sorted({r["pair"] for r in pairs if "pair" in r}):
            c = [r["ckpt_mibs"] for r in pairs
                 if r.get("pair") == i and r["_prog"] == "throughput" and r.get("codec") == codec
                 and r.get("fs", "disk") == fs and r.get("io", "buffered") == io]
            d = [r["mibs"] for r in pairs if r.get("pair") == i and r["_prog"] == "dd" and r.get("fs", "disk") == fs
                 and r.get("io", "buffered") == (dd_io or io)]
            if c and d and d[0] > 0:
                out.append((c[0] / d[0], c[0], d[0]))
        return out

    for codec, data, goal in (("stored", "incompressible", 1.0), ("zstd-1", "compressible", 0.8)):
        pr = pair_ratios(codec)
        med = sorted(x[0] for x in pr)[len(pr) // 2] if pr else None
        R.goal("%s checkpoint throughput vs dd, %s heap (median of %d paired runs)" % (codec, data, len(pr)),
               med, goal, fmt_ratio,
               "pairs: " + ", ".join("%.0f/%.0f MiB/s" % (c, d) for _, c, d in pr) if pr else "",
               higher_is_better=True)
    for dd_io, what in (("direct", "dd oflag=direct"), ("buffered", "dd conv=fsync through the page cache")):
        pr = pair_ratios("stored", io="direct", dd_io=dd_io)
        R.goal("stored checkpoint with CKPT_BEGIN_DIRECT vs %s (median of %d paired runs)" % (what, len(pr)),
               sorted(x[0] for x in pr)[len(pr) // 2] if pr else None, 1.0, fmt_ratio,
               "pairs: " + ", ".join("%.0f/%.0f MiB/s" % (c, d) for _, c, d in pr) if pr else "",
               higher_is_better=True)
    pr = pair_ratios("stored", "tmpfs")
    R.goal("stored checkpoint vs dd into tmpfs: the library's own path, no disk (median of %d pairs)" % len(pr),
           sorted(x[0] for x in pr)[len(pr) // 2] if pr else None, 1.0, fmt_ratio,
           "pairs: " + ", ".join("%.0f/%.0f MiB/s" % (c, d) for _, c, d in pr) if pr else "",
           higher_is_better=True)
    stored = T("incompressible", "stored")
    R.goal("stored-mode checkpoint throughput vs dd (medians of separate runs)", ratio(stored, dd_med), 1.0,
           fmt_ratio, "%s vs %s MiB/s" % ("n/a" if stored is None else "%.0f" % stored,
                                          "n/a" if dd_med is None else "%.0f" % dd_med),
           higher_is_better=True)

    # ------------------------------------------------------------ redis
    redis = {}
    for path in sorted(glob.glob(os.path.join(raw, "redis-*.txt"))):
        nm = os.path.basename(path)[len("redis-"):-len(".txt")]
        # repeated sections (one per snapshot repetition) are folded into
        # their per-key medians
        reps = {}
        for r in parse(path):
            tag = r["_tags"][0] if r["_tags"] else None
            if "window" in r:
                key = "w_" + r["window"]
            elif r["_prog"] == "rbench":
                key = "rb_" + r["op"]
            elif tag:
                key = tag
            else:
                continue
            reps.setdefault(key, []).append(r)
        d = {}
        for key, rows in reps.items():
            m = dict(rows[0])
            for k in rows[0]:
                vals = [x[k] for x in rows if isinstance(x.get(k), float)]
                if vals and isinstance(rows[0][k], float):
                    vals.sort()
                    n = len(vals)
                    m[k] = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
            m["_n"] = len(rows)
            d[key] = m
        redis[nm] = d

    def RV(nm, sec, key):
        v = redis.get(nm, {}).get(sec, {}).get(key)
        return v if isinstance(v, float) else None

    base = "server"
    for nm in sorted(k for k in redis if k != base):
        R.goal("Redis p99 inside the snapshot: redis-%s vs redis-server" % nm,
               ratio(RV(nm, "w_inside", "p99_us"), RV(base, "w_inside", "p99_us")), 0.2, fmt_ratio,
               "%s vs %s" % (fmt_ns(RV(nm, "w_inside", "p99_us") and RV(nm, "w_inside", "p99_us") * 1e3),
                             fmt_ns(RV(base, "w_inside", "p99_us") and RV(base, "w_inside", "p99_us") * 1e3)))
        R.goal("Redis max inside the snapshot: redis-%s vs redis-server" % nm,
               ratio(RV(nm, "w_inside", "max_us"), RV(base, "w_inside", "max_us")), 0.05, fmt_ratio,
               "%s vs %s" % (fmt_ns(RV(nm, "w_inside", "max_us") and RV(nm, "w_inside", "max_us") * 1e3),
                             fmt_ns(RV(base, "w_inside", "max_us") and RV(base, "w_inside", "max_us") * 1e3)))
    for nm in sorted(k for k in redis if k != base):
        for op in ("SET", "GET"):
            R.goal("Redis %s throughput outside snapshots: redis-%s vs redis-server" % (op, nm),
                   ratio(RV(nm, "rb_" + op, "rps"), RV(base, "rb_" + op, "rps")), 0.8, fmt_ratio,
                   "%s vs %s req/s" % (RV(nm, "rb_" + op, "rps"), RV(base, "rb_" + op, "rps")),
                   higher_is_better=True)
    if not [k for k in redis if k != base]:
        R.goal("Redis end to end: redis-ckpt vs redis-server", None, 0.2, fmt_ratio,
               "redis-ckpt was not built or did not run")
    ld = loaded_parse(raw)
    loaded_goals(R, ld)
    pl, pl_unavail = pause_loaded_parse(raw)
    pause_loaded_goals(R, pl)

    # ============================================================ write
    R.p("# libckpt benchmark results: %s" % a.name)
    R.p()
    R.p("Produced by `bench/run.sh%s`. Ratios between methods measured in the same run are the "
        "result; absolute times on this shared 2-core VM are noisy. Latency statistics are medians "
        "over repetitions." % (" --full" if env.get("mode") == "full" else ""))
    R.p()
    R.p("| | |")
    R.p("|---|---|")
    for k in ("date", "host", "kernel", "cpu", "ncpu", "mem_kb", "git", "seed", "mode", "thp", "loadavg",
              "kcheck_rc"):
        if k in env:
            R.p("| %s | %s |" % (k, env[k]))
    sz = [l for l in open(os.path.join(raw, "env.txt")) if l.startswith("faultlat_pages")]
    if sz:
        R.p("| sizes | %s |" % sz[0].strip())
    R.p()
    R.p("## Summary")
    R.p()
    R.p("Goals of issues 6 and 10 (ratio = libckpt / baseline unless stated):")
    R.p()
    R.p("| goal | measured | target | verdict | figures |")
    R.p("|---|---|---|---|---|")
    for g in R.goals:
        R.p("| %s | %s | %s | %s | %s |" % g)
    R.p()
    # headline: first-write latency, seq, fault-around off, ratio to fork
    R.p("Headline: first write to a page during a snapshot (sequential writer, 4 KiB pages, fault-around off):")
    R.p()
    R.p("| mode | p50 | p99 | p99.9 | max | p50 / fork COW |")
    R.p("|---|---|---|---|---|---|")
    for m in ("plain", "copy4k", "copy4k-alias", "wp-unprot", "wpasync", "fork", "mprotect", "uffd-sigbus", "uffd-thread", "uffd-poll",
              "ckpt-sigbus", "ckpt-thread", "ckpt-poll"):
        if F(m) is None:
            R.p("| %s | n/a | | | | |" % m)
            continue
        R.p("| %s | %s | %s | %s | %s | %s |" % (m, fmt_ns(F(m)), fmt_ns(F(m, key="p99")),
                                                  fmt_ns(F(m, key="p999")), fmt_ns(F(m, key="max")),
                                                  fmt_ratio(ratio(F(m), fork50))))
    R.p()
    R.p("## Details")
    R.p()
    R.p("### 1. Write-fault latency during a snapshot (`bench/faultlat`)")
    R.p()
    R.p("Every write is timed with the TSC; the distribution is over the first write to each page. "
        "`amort (wall)` = the whole write loop / distinct pages written (the cost per page over the snapshot "
        "window); `amort (CPU)` = the process's CPU time over the loop, all threads, / distinct pages written "
        "(immune to run-queue waits on a loaded machine, which dominate the wall figure's mean here); `amp` = pages copied aside / distinct pages written (-1: nothing copied by user space). "
        "fork: private anon heap, the child keeps the pages shared. mprotect: PROT_READ + SIGSEGV handler "
        "that copies the page and mprotect()s it writable. copy4k: not a write, a 4 KiB memcpy of the page into a "
        "pre-faulted pool (the floor of any copy-before-write scheme, fork's COW included); copy4k-alias: the same "
        "copy from a never-touched second mapping of the memfd, as libckpt's alias is (minor faults). wp-unprot: a shmem page uffd-write-protected and "
        "unprotected again before the write (what a page unprotected by fault-around or the writer costs: "
        "the kernel takes a fault to give the pte its write bit back). wpasync: UFFD_FEATURE_WP_ASYNC, the kernel "
        "resolves the fault. uffd-*: raw userfaultfd WP on shmem without libckpt. ckpt-*: libckpt through "
        "the public API, into a sink that holds the writer, so every first write traps.")
    R.p()
    R.p("| mode | pattern | fa | count | p50 | p90 | p99 | p99.9 | max | amort (wall) | amort (CPU) | amp | "
        "p50/fork p50 | amort CPU/fork p50 |")
    R.p("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in fl:
        f50 = F("fork", r["pattern"])
        R.p("| %s | %s | %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["mode"], r["pattern"], r["fa"], r["count"], fmt_ns(r["p50"]), fmt_ns(r["p90"]),
            fmt_ns(r["p99"]), fmt_ns(r["p999"]), fmt_ns(r["max"]), fmt_ns(r["amort"]),
            fmt_ns(r.get("amort_cpu")), "-" if r["amp"] < 0 else "%.2f" % r["amp"],
            fmt_ratio(ratio(r["p50"], f50)), fmt_ratio(ratio(r.get("amort_cpu"), f50))))
    for l in fl_unavail:
        R.p("- `%s`" % l)
    R.p()
    R.p("Fault-around, to choose the default: amortized CPU cost per page written / copy amplification.")
    R.p()
    R.p("| mode | pattern | fa=1 | fa=4 | fa=16 | fa=64 |")
    R.p("|---|---|---|---|---|---|")
    for m in ("ckpt-sigbus", "ckpt-thread", "ckpt-poll"):
        for pat in ("seq", "rand", "zipf"):
            cells = []
            for fa in (1, 4, 16, 64):
                ac, am = F(m, pat, fa, "amort_cpu"), F(m, pat, fa, "amp")
                cells.append("n/a" if ac is None else "%s / %.2f" % (fmt_ns(ac), am))
            R.p("| %s | %s | %s |" % (m, pat, " | ".join(cells)))
    R.p()
    live = [r for r in parse(os.path.join(raw, "faultlat-live.txt")) if "mode" in r and "p50" in r]
    if live:
        seqc = [r["count"] for r in live if r["pattern"] == "seq"]
        R.p("With the writer running (`faultlat --live`): the checkpoint goes to a real image file (page "
            "cache, no fsync) with the pool capped at the default 64 MiB, heap %s; traps that find the pool "
            "full wait for the writer to drain it (`pool waits`). `amp` here counts only pages the fault path "
            "copied; pages the writer reached first cost no copy." % (fmt_bytes(seqc[0] * 4096) if seqc else "?"))
        R.p()
        R.p("| mode | pattern | fa | p50 | p99 | p99.9 | max | amort (wall) | amort (CPU) | amp | traps | pool waits |")
        R.p("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for r in live:
            R.p("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %.2f | %.0f | %.0f |" % (
                r["mode"], r["pattern"], r["fa"], fmt_ns(r["p50"]), fmt_ns(r["p99"]), fmt_ns(r["p999"]),
                fmt_ns(r["max"]), fmt_ns(r["amort"]), fmt_ns(r.get("amort_cpu")), r["amp"], r["traps"],
                r.get("pool_waits", -1)))
        R.p()
    R.p("![latency CDF, sequential](%s-faultlat-seq.png)" % a.name)
    R.p("![latency CDF, random](%s-faultlat-rand.png)" % a.name)
    R.p("![latency CDF, zipf](%s-faultlat-zipf.png)" % a.name)
    R.p("![fault-around](%s-faultlat-fa.png)" % a.name)
    R.p()

    R.p("### 2. Pause at snapshot start (`bench/pause`)")
    R.p()
    R.p("| heap | method | pause | library's pause_ns | / fork() |")
    R.p("|---|---|---|---|---|")
    for s in sizes:
        for r in [r for r in pa if int(r["size"]) == s]:
            R.p("| %s | %s | %s | %s | %s |" % (fmt_bytes(s), r["method"], fmt_ns(r["ns"]),
                                              "-" if r["stats_pause_ns"] < 0 else fmt_ns(r["stats_pause_ns"]),
                                              fmt_ratio(ratio(r["ns"], P("fork", s)))))
    for l in pa_unavail:
        R.p("- `%s`" % l)
    R.p()
    R.p("![pause vs heap size](%s-pause.png)" % a.name)
    R.p()

    R.p("### 3. Extra memory during a snapshot, write-everything workload (`bench/memgrowth`)")
    R.p()
    R.p("| method | heap | written during the snapshot | extra memory peak | pool cap | window |")
    R.p("|---|---|---|---|---|---|")
    for m, r in sorted(mg.items()):
        R.p("| %s | %s | %s | %s | %s | %.0f ms |" % (m, fmt_bytes(r["size"]), fmt_bytes(r["written_bytes"]),
                                                     fmt_bytes(r["peak_bytes"]),
                                                     fmt_bytes(r["pool_cap"]) if r["pool_cap"] else "-",
                                                     r["window_ms"]))
    for l in mg_unavail:
        R.p("- `%s`" % l)
    R.p()
    R.p("fork: Private_Clean + Private_Dirty of the child (the pages the parent copied; includes the child's "
        "own ~3 MiB of libc/stack). libckpt: `ckpt_stats().pool_peak_bytes`.")
    R.p()
    R.p("![memory over time](%s-memory.png)" % a.name)
    R.p()

    R.p("### 4. Checkpoint throughput (`bench/throughput`, dd)")
    R.p()
    R.p("| data | codec | checkpoint MiB/s | / dd | image size | restore MiB/s |")
    R.p("|---|---|---|---|---|---|")
    for r in tp:
        R.p("| %s | %s | %.0f | %s | %s | %.0f |" % (r["data"], r["codec"], r["ckpt_mibs"],
                                                   fmt_ratio(ratio(r["ckpt_mibs"], dd_med)),
                                                   fmt_bytes(r["image_bytes"]), r["restore_mibs"]))
    R.p("| (dd, conv=fsync) | | %s | 1.00x | | |" % ("n/a" if dd_med is None else "%.0f" % dd_med))
    for l in tp_unavail:
        R.p("- `%s`" % l)
    R.p()
    if pairs:
        R.p("Paired runs (back to back, order alternating; the goals use the median of the ratios). "
            "zstd CLI: `zstd -1 -T0` over the same bytes as the zstd-1 checkpoint, then fsync - "
            "the machine's compression ceiling.")
        R.p()
        R.p("| pair | stored MiB/s | dd MiB/s | stored / dd | zstd-1 MiB/s | zstd-1 / dd | zstd CLI MiB/s | "
            "zstd-1 / CLI | tmpfs: stored / dd | O_DIRECT: stored / dd |")
        R.p("|---|---|---|---|---|---|---|---|---|---|")

        def PV(i, prog, codec=None, key="mibs", fs="disk", io="buffered"):
            for r in pairs:
                if r.get("pair") == i and r["_prog"] == prog and (codec is None or r.get("codec") == codec) \
                        and key in r and r.get("fs", "disk") == fs and r.get("io", "buffered") == io:
                    return r[key]
            return None
        for i in sorted({r["pair"] for r in pairs if "pair" in r}):
            st, d = PV(i, "throughput", "stored", "ckpt_mibs"), PV(i, "dd")
            z, zc = PV(i, "throughput", "zstd-1", "ckpt_mibs"), PV(i, "zcli")
            f = lambda v: "n/a" if v is None else "%.0f" % v
            ts, td = PV(i, "throughput", "stored", "ckpt_mibs", "tmpfs"), PV(i, "dd", fs="tmpfs")
            ds, dd_ = PV(i, "throughput", "stored", "ckpt_mibs", io="direct"), PV(i, "dd", io="direct")
            R.p("| %d | %s | %s | %s | %s | %s | %s | %s | %s / %s = %s | %s / %s = %s |" % (
                i, f(st), f(d), fmt_ratio(ratio(st, d)), f(z), fmt_ratio(ratio(z, d)), f(zc),
                fmt_ratio(ratio(z, zc)), f(ts), f(td), fmt_ratio(ratio(ts, td)), f(ds), f(dd_),
                fmt_ratio(ratio(ds, dd_))))
        R.p()

    R.p("### 5. Allocator (`bench/allocbench`)")
    R.p()
    ab = os.path.join(raw, "allocbench.txt")
    if os.path.exists(ab):
        R.p("```")
        R.p(open(ab, errors="replace").read().rstrip())
        R.p("```")
    else:
        R.p("allocbench not built or not run.")
    R.p()

    R.p("### 6. Redis end to end (`bench/loadgen`, redis-benchmark)")
    R.p()
    R.p("Open-loop load (%s req/s, 50%% SET / 50%% GET, 64-byte values, %s keys); latency from each "
        "request's scheduled send time to its reply, so a stall counts for every request it delays. "
        "Inside = requests whose life overlaps the snapshot window (BGSAVE sent to "
        "`rdb_bgsave_in_progress:0`). Every figure is the median over %s snapshot repetitions; the plots "
        "show the first." % (env.get("redis_rate", "?"), env.get("redis_keys", "?"), env.get("redis_reps", "1")))
    R.p()
    R.p("| server | window | count | p50 | p99 | p99.9 | max | p99 / redis-server | max / redis-server |")
    R.p("|---|---|---|---|---|---|---|---|---|")
    for nm in sorted(redis, key=lambda k: (k != base, k)):
        for w in ("inside", "outside"):
            r = redis[nm].get("w_" + w)
            if not r or not r.get("count"):
                continue
            R.p("| %s | %s | %d | %s | %s | %s | %s | %s | %s |" % (
                nm, w, r["count"], fmt_ns(r["p50_us"] * 1e3), fmt_ns(r["p99_us"] * 1e3),
                fmt_ns(r["p999_us"] * 1e3), fmt_ns(r["max_us"] * 1e3),
                fmt_ratio(ratio(r["p99_us"], RV(base, "w_" + w, "p99_us"))),
                fmt_ratio(ratio(r["max_us"], RV(base, "w_" + w, "max_us")))))
    R.p()
    R.p("| server | snapshot | throughput dip (worst 250 ms) | extra memory (Pss) | image / RDB | restart to first reply | "
        "SET req/s | GET req/s | SET / redis-server | GET / redis-server |")
    R.p("|---|---|---|---|---|---|---|---|---|---|")
    for nm in sorted(redis, key=lambda k: (k != base, k)):
        d = redis[nm]
        R.p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            nm,
            ("%.0f ms (%s)" % (d["snapshot"]["duration_ms"], d["snapshot"].get("status")))
            if "snapshot" in d else "n/a",
            ("%.0f%%" % (100 * d["throughput"]["dip"])) if "throughput" in d else "n/a",
            fmt_bytes(d["memory"]["extra_kb"] * 1024) if "memory" in d else "n/a",
            fmt_bytes(d["image"]["bytes"]) if "image" in d else "n/a",
            ("%.0f ms (%s keys)" % (d["start"]["ms"], "%.0f" % d["dbsize"]["n"] if "dbsize" in d else "?"))
            if "start" in d else ("**failed**" if "image" in d else "n/a"),
            RV(nm, "rb_SET", "rps"), RV(nm, "rb_GET", "rps"),
            fmt_ratio(ratio(RV(nm, "rb_SET", "rps"), RV(base, "rb_SET", "rps"))),
            fmt_ratio(ratio(RV(nm, "rb_GET", "rps"), RV(base, "rb_GET", "rps")))))
    for nm in sorted(redis):
        d = redis[nm]
        logp = os.path.join(raw, "redis-%s.log" % nm)
        if "start" not in d and "image" in d and os.path.exists(logp):
            errs = [l.strip() for l in open(logp, errors="replace")
                    if re.search(r"Can't|Refusing|error|Error|FATAL", l)]
            R.p()
            R.p("Restart of %s from its image failed; the server said: `%s`" % (nm, errs[-1] if errs else "nothing"))
    R.p()
    R.p("The servers' own account of the snapshot (INFO; medians): the pause at its start "
        "(`latest_fork_usec` for redis-server, `ckpt_pause_us` for redis-ckpt) and libckpt's fault-path figures.")
    R.p()
    R.p("| server | pause | traps | pages saved by traps | pool peak | traps that waited for the pool |")
    R.p("|---|---|---|---|---|---|")
    for nm in sorted(redis, key=lambda k: (k != base, k)):
        si = redis[nm].get("srvinfo", {})
        pause = si.get("ckpt_pause_us", si.get("latest_fork_usec"))
        R.p("| %s | %s | %s | %s | %s | %s |" % (
            nm, fmt_ns(pause * 1e3) if isinstance(pause, float) else "n/a",
            "%.0f" % si["ckpt_traps"] if "ckpt_traps" in si else "-",
            "%.0f" % si["ckpt_pages_saved_by_traps"] if "ckpt_pages_saved_by_traps" in si else "-",
            fmt_bytes(si["ckpt_pool_peak_bytes"]) if "ckpt_pool_peak_bytes" in si else "-",
            "%.0f" % si["ckpt_pool_waits"] if "ckpt_pool_waits" in si else "-"))
    R.p()
    for nm in sorted(redis, key=lambda k: (k != base, k)):
        R.p("![Redis latency over time, %s](%s-redis-%s.png)" % (nm, a.name, nm))
    R.p()

    if ld:
        loaded_write(R, ld, env, a.name)
    if pl or pl_unavail:
        pause_loaded_write(R, pl, pl_unavail, a.name)
    restart_write(R, a.raw, os.path.dirname(a.out), a.name)

    with open(a.out, "w") as f:
        f.write("\n".join(R.out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
