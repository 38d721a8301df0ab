"""consistency.py MODE - the consistency cut of BGSAVE.

A client streams pipelined `SET key:(i mod K) i` for i = 1..N with BGSAVE
at two known positions M1 and M2 of the stream (the second checkpoint is
incremental).  The stream keeps flowing while each checkpoint is written, so
the writes race the writer (traps).  After the checkpoints complete the
server is SIGKILLed and restarted from the image: every key must hold exactly
the values of one point P of the stream (the last value written at or before
P), with P at or after the second BGSAVE: BGSAVE prepares the checkpoint and
the server cuts it a few milliseconds later, between two commands, so the
instant is the cut, not the command.  The first (full) image, kept by libckpt
as the incremental's parent, must likewise hold the state of one point after
M1 and before M2.  A 40 MB ballast of known values makes each checkpoint long
enough to race.
"""
import os
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Conn, Server, check, encode, fail, parse, tmpdir  # noqa: E402

MODE = sys.argv[1] if len(sys.argv) > 1 else "thread"
K = 5000
N = 300000
M1, M2 = 100000, 220000
BALLAST = 40000
CHUNK = 2000


def ballast_value(i):
    return (b"%08d" % i) * 128  # 1 KiB


def expected(m):
    """key:j -> the last i <= m with i % K == j."""
    exp = {}
    for j in range(K):
        last = m - ((m - j) % K)
        exp[j] = last
    return exp


def check_state(srv, lo, hi, what):
    """The keyspace is the stream's state at one point m, lo <= m <= hi."""
    c = srv.conn()
    dbsize = parse(c.call("DBSIZE"))
    check(dbsize == K + BALLAST, "%s: DBSIZE %d, want %d" % (what, dbsize, K + BALLAST))
    got = {}
    for base in range(0, K, 500):
        keys = ["key:%d" % j for j in range(base, min(K, base + 500))]
        vals = parse(c.call("MGET", *keys))
        for j, v in zip(range(base, base + len(keys)), vals):
            got[j] = int(v) if v is not None else -1
    m = max(got.values())  # the newest write in the image names the point
    check(lo <= m <= hi, "%s: the image is the state at %d, not in [%d, %d]" % (what, m, lo, hi))
    exp = expected(m)
    bad = 0
    for j in range(K):
        if got[j] != exp[j]:
            if bad < 10:
                print("%s: key:%d = %r, want %d" % (what, j, got[j], exp[j]))
            bad += 1
    check(bad == 0, "%s: %d of %d keys do not hold the value written last at the cut (%d)" % (what, bad, K, m))
    for i in range(0, BALLAST, 997):
        v = parse(c.call("GET", "ballast:%d" % i))
        check(v == ballast_value(i), "%s: ballast:%d damaged" % (what, i))
    c.close()
    print("ok: %s: all %d keys hold exactly the values of the cut at i=%d (BGSAVE at %d); ballast intact"
          % (what, K, m, lo))


def main():
    srv = Server(args=["--save", "", "--heap-size", "512mb", "--snapshot-mode", MODE, "--incremental", "yes"])
    c = srv.conn()
    # ballast
    for base in range(0, BALLAST, 1000):
        c.send_raw(b"".join(encode("SET", "ballast:%d" % i, ballast_value(i)) for i in range(base, base + 1000)))
        for _ in range(1000):
            check(c.read_reply() == b"+OK\r\n", "ballast SET")

    errors = []
    stats = {}

    def reader():
        try:
            for i in range(1, N + 1):
                r = c.read_reply()
                if r != b"+OK\r\n":
                    errors.append("SET %d: %r" % (i, r))
                    return
                if i in (M1, M2):
                    r = c.read_reply()
                    if r != b"+Background saving started\r\n":
                        errors.append("BGSAVE after %d: %r" % (i, r))
                        return
        except Exception as e:  # noqa: BLE001
            errors.append("reader: %r" % e)

    rt = threading.Thread(target=reader)
    rt.start()
    t0 = time.time()
    i = 1
    while i <= N:
        batch = []
        end = min(N, i + CHUNK - 1)
        for k in range(i, end + 1):
            batch.append(encode("SET", "key:%d" % (k % K), k))
            if k == M1:
                batch.append(encode("BGSAVE"))
            if k == M2:
                batch.append(encode("BGSAVE"))
        if M2 in range(i, end + 1):
            # the first checkpoint must be finished for the second BGSAVE to
            # be accepted: the stream waits here, not during the checkpoint
            stats["first"] = srv.wait_bgsave()
        c.send_raw(b"".join(batch))
        i = end + 1
    rt.join(timeout=300)
    check(not errors, "; ".join(errors))
    stats["second"] = srv.wait_bgsave()
    dt = time.time() - t0
    for name in ("first", "second"):
        s = stats[name]
        check(s["rdb_last_bgsave_status"] == "ok", "%s checkpoint status %s (%s)" % (name, s["rdb_last_bgsave_status"],
                                                                                  s.get("ckpt_last_error")))
        print("%s checkpoint: pause %s us, traps %s, bytes %s, incremental %s, duration %s us, "
              "prepared in %s us (%s passes, %s traps), %s pages left for the cut" % (
                  name, s["ckpt_pause_us"], s["ckpt_traps"], s["ckpt_bytes_written"], s["ckpt_incremental"],
                  s["ckpt_duration_us"], s["ckpt_prepare_us"], s["ckpt_prep_passes"], s["ckpt_prep_traps"],
                  s["ckpt_cut_pages"]))
        if MODE != "fork":
            check(int(s["ckpt_prep_passes"]) >= 1, "%s: BGSAVE did not prepare in passes" % name)
    fork = MODE == "fork"  # the fork backend has no traps and no incrementals
    if not fork:
        check(stats["second"]["ckpt_incremental"] == "1", "second checkpoint was not incremental")
        check(int(stats["first"]["ckpt_traps"]) + int(stats["second"]["ckpt_traps"]) > 0,
              "no write trapped during either checkpoint: the test did not race the writer")
    print("streamed %d SETs in %.1f s" % (N, dt))
    c.close()

    d = srv.dir
    parents = sorted(f for f in os.listdir(d) if f.startswith("dump.ckpt.g"))
    check(len(parents) == (0 if fork else 1),
          "expected %d parent image next to the tip, found %r" % (0 if fork else 1, os.listdir(d)))
    srv.kill9()

    again = Server(args=["--save", "", "--snapshot-mode", MODE, "--incremental", "yes"], dir=d)
    check_state(again, M2, N, "%s mode, restart from the %s image" % (MODE, "full" if fork else "incremental"))
    again.kill9()

    if fork:
        print("PASS consistency %s" % MODE)
        return
    d1 = tmpdir()
    shutil.copy(os.path.join(d, parents[0]), os.path.join(d1, "dump.ckpt"))
    first = Server(args=["--save", "", "--snapshot-mode", MODE], dir=d1)
    check_state(first, M1, M2 - 1, "%s mode, the first (full) image" % MODE)
    first.stop()
    print("PASS consistency %s" % MODE)


if __name__ == "__main__":
    main()
