"""psync.py - partial resync with a real redis-server 7.0 replica: when its
link breaks (CLIENT KILL TYPE master on the replica; CLIENT KILL TYPE
replica on the primary while the replica is stopped, so that writes fall
in the gap) it comes back with
PSYNC <replid> <offset+1> and gets +CONTINUE and the backlog (INFO stats
sync_partial_ok counts it, no new checkpoint is taken) and matches the
primary; past the backlog's reach (more writes than
repl-backlog-size while cut off) it falls back to a full resync
(sync_partial_err, sync_full) and matches again."""
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Server, check  # noqa: E402
from rdblib import client, fill, info, same, wait_synced  # noqa: E402

BACKLOG = 256 * 1024


def stats(port):
    s = info(port, "stats")
    return int(s["sync_full"]), int(s["sync_partial_ok"]), int(s["sync_partial_err"])


def write_batch(r, tag, n, size=8):
    r.pipeline([["SET", "%s:%d" % (tag, i), "x" * size] for i in range(n)] +
               [["INCR", "%s:n" % tag], ["RPUSH", "%s:l" % tag, "a", "b"], ["DEL", "%s:0" % tag],
                ["SET", "%s:ttl" % tag, "t", "EX", "1000"]])


def backlog_bytes_sent(primary):
    m = re.findall(r"accepted: (\d+) bytes of backlog", primary.output())
    return [int(x) for x in m]


def main():
    primary = Server(args=["--heap-size", "256mb", "--save", "", "--repl-backlog-size", str(BACKLOG)])
    r = client(primary.port)
    fill(r)
    check(r("CONFIG", "GET", "repl-backlog-size") == [b"repl-backlog-size", str(BACKLOG).encode()],
          "CONFIG GET repl-backlog-size")
    rep = Server(kind="redis", args=["--replicaof", "127.0.0.1", str(primary.port)])
    wait_synced(primary, [rep])
    check(stats(primary.port) == (1, 0, 0), "after the first sync: %r" % (stats(primary.port),))
    p = info(primary.port)
    check(p["repl_backlog_active"] == "1" and p["repl_backlog_size"] == str(BACKLOG), "backlog INFO %r" % p)
    done = int(p["ckpt_syncs_done"])

    # 1. the replica drops its link (it reconnects at once: the writes
    # may or may not fall in the gap)
    check(client(rep.port)("CLIENT", "KILL", "TYPE", "master") == 1, "CLIENT KILL TYPE master on the replica")
    write_batch(r, "a", 500)
    wait_synced(primary, [rep])
    check(stats(primary.port) == (1, 1, 0), "after CLIENT KILL TYPE master: %r" % (stats(primary.port),))
    n = same(primary, rep, "after a partial resync (replica dropped the link)")
    print("ok: replica dropped its link: PSYNC +CONTINUE, %d keys identical" % n)

    # 2. the primary drops the replica while it is stopped: the writes
    # after the kill exist only in the backlog (and those before it may
    # die in the socket buffers), so the replica must get them from there
    os.kill(rep.proc.pid, signal.SIGSTOP)
    try:
        write_batch(r, "b", 300)
        check(r("CLIENT", "KILL", "TYPE", "replica") == 1, "CLIENT KILL TYPE replica on the primary")
        before = int(info(primary.port)["master_repl_offset"])
        write_batch(r, "c", 500)
        gap = int(info(primary.port)["master_repl_offset"]) - before
    finally:
        os.kill(rep.proc.pid, signal.SIGCONT)
    wait_synced(primary, [rep])
    check(stats(primary.port) == (1, 2, 0), "after CLIENT KILL TYPE replica: %r" % (stats(primary.port),))
    same(primary, rep, "after a partial resync (primary dropped the replica)")
    sent = backlog_bytes_sent(primary)
    check(len(sent) == 2 and sent[1] >= gap, "backlog bytes sent per partial resync: %r; %d bytes were written "
          "after the primary dropped the replica" % (sent, gap))
    check(int(info(primary.port)["ckpt_syncs_done"]) == done, "a partial resync took a checkpoint")
    print("ok: primary dropped the (stopped) replica, %d bytes of writes after: PSYNC +CONTINUE with %d bytes "
          "of backlog, no checkpoint taken, identical" % (gap, sent[1]))

    # 3. more than the backlog holds while cut off: full resync
    os.kill(rep.proc.pid, signal.SIGSTOP)
    try:
        check(r("CLIENT", "KILL", "TYPE", "replica") == 1, "CLIENT KILL TYPE replica (2)")
        write_batch(r, "d", 3000, size=200)
    finally:
        os.kill(rep.proc.pid, signal.SIGCONT)  # ~700 KB of stream > 256 KB of backlog
    wait_synced(primary, [rep])
    check(stats(primary.port) == (2, 2, 1), "after overrunning the backlog: %r" % (stats(primary.port),))
    n = same(primary, rep, "after the fallback full resync")
    print("ok: %d KB written while cut off > %d KB of backlog: full resync (sync_partial_err 1), %d keys identical"
          % (int(info(primary.port)["master_repl_offset"]) // 1024, BACKLOG // 1024, n))

    # 4. further writes reach it
    write_batch(r, "e", 1000)
    wait_synced(primary, [rep])
    same(primary, rep, "after more writes")
    print("ok: consistent after more writes")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print("psync: all passed in %.1f s" % (time.time() - t0))
