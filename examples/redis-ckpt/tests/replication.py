"""replication.py - redis-ckpt is a primary real Redis tools and replicas
accept: `redis-cli --rdb` yields a file redis-check-rdb passes and
redis-server loads with the same keys; a redis-server --replicaof it matches
it after the full sync and after 100k further writes (a second replica
attached in the middle of them, so its sync runs while the writes go on);
INFO replication on both sides shows the link; expired keys reach the
replicas as DELs and SPOP as the members it popped."""
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Server, check, tmpdir  # noqa: E402
from rdblib import client, fill, info, same, wait_synced, writes  # noqa: E402


def wait_checks(r):
    """WAIT blocks the client until the replica acknowledged its writes (or
    the timeout), then runs what the client pipelined behind it."""
    from rclib import encode
    r("SET", "waited", "1")
    t = time.time()
    check(r("WAIT", "1", "10000") == 1, "WAIT 1 10000 with one replica")
    check(time.time() - t < 5, "WAIT 1 took %.1f s" % (time.time() - t))
    t = time.time()
    got = r("WAIT", "2", "300")
    check(got == 1 and time.time() - t >= 0.29, "WAIT 2 300 with one replica: %r after %.3f s" % (got, time.time() - t))
    r.c.send_raw(encode("SET", "waited", "2") + encode("WAIT", "1", "10000") + encode("GET", "waited"))
    replies = [r.c.read_reply() for _ in range(3)]
    check(replies == [b"+OK\r\n", b":1\r\n", b"$1\r\n2\r\n"], "pipelined behind WAIT: %r" % replies)
    r.c.send_raw(encode("MULTI") + encode("WAIT", "5", "0") + encode("EXEC"))
    replies = [r.c.read_reply() for _ in range(3)]
    check(replies[2] == b"*1\r\n:1\r\n", "WAIT inside MULTI must not block: %r" % replies)
    print("ok: WAIT counts acknowledging replicas, honours its timeout, blocks only its client")


def scan_all(r):
    cursor = b"0"
    while True:
        cursor, _ = r("SCAN", cursor, "COUNT", "1000")
        if cursor == b"0":
            return


def main():
    primary = Server(args=["--heap-size", "256mb", "--save", ""])
    r = client(primary.port)
    fill(r)
    nkeys = int(r("DBSIZE"))
    check(r("WAIT", "0", "0") == 0, "WAIT 0 0 without replicas")
    t = time.time()
    check(r("WAIT", "1", "150") == 0 and time.time() - t >= 0.14, "WAIT 1 150 without replicas: not 0 after 150 ms")

    # redis-cli --rdb: a backup redis-check-rdb accepts and redis-server loads
    d = tmpdir()
    out = os.path.join(d, "backup.rdb")
    p = subprocess.run(["redis-cli", "-p", str(primary.port), "--rdb", out], capture_output=True, timeout=120)
    check(p.returncode == 0, "redis-cli --rdb failed: %s %s" % (p.stdout, p.stderr))
    p = subprocess.run(["redis-check-rdb", out], capture_output=True, timeout=120)
    check(p.returncode == 0 and b"RDB looks OK" in p.stdout, "redis-check-rdb: %s" % p.stdout[-500:])
    loaded = Server(kind="redis", args=["--dbfilename", "backup.rdb"], dir=d)
    n = same(primary, loaded, "redis-cli --rdb loaded into redis-server")
    loaded.stop()
    r("CONFIG", "SET", "rdbcompression", "no")
    plain = os.path.join(d, "plain.rdb")
    p = subprocess.run(["redis-cli", "-p", str(primary.port), "--rdb", plain], capture_output=True, timeout=120)
    r("CONFIG", "SET", "rdbcompression", "yes")
    check(p.returncode == 0, "redis-cli --rdb (rdbcompression no) failed: %s %s" % (p.stdout, p.stderr))
    sizes = os.path.getsize(out), os.path.getsize(plain)
    check(sizes[0] + 10000 < sizes[1], "RDB with LZF %d bytes, without %d: the LZF strings (s:lzf, l:lzf: "
          "~10 KB of repeats) should make the difference" % sizes)
    print("ok: redis-cli --rdb: %d keys, redis-check-rdb OK, redis-server loads the same keys; LZF: %d bytes "
          "against %d plain" % (n, sizes[0], sizes[1]))

    # a real replica: full sync
    rep1 = Server(kind="redis", args=["--replicaof", "127.0.0.1", str(primary.port)])
    pinfo = wait_synced(primary, [rep1])
    check(pinfo["role"] == "master" and pinfo["slave0"].startswith("ip=127.0.0.1,port=%d,state=online" % rep1.port),
          "primary INFO replication: %r" % pinfo)
    rinfo = info(rep1.port)
    check(rinfo["role"] == "slave" and rinfo["master_port"] == str(primary.port), "replica INFO: %r" % rinfo)
    n = same(primary, rep1, "after the full sync")
    check(n == nkeys, "full sync: %d keys, want %d" % (n, nkeys))
    wait_checks(r)
    print("ok: redis-server replica after the full sync: %d keys identical; INFO replication both sides" % n)

    # 100k writes; a second replica attaches after 50k, its sync runs while
    # the writes go on
    rnd = random.Random(7)
    writes(r, 50000, rnd)
    done = int(info(primary.port)["ckpt_syncs_done"])
    rep2 = Server(kind="redis", args=["--replicaof", "127.0.0.1", str(primary.port)], wait=True)
    # keep writing until its sync is over (so writes fall inside it), 50k at least
    n, end = 0, time.time() + 120
    while n < 50000 or (int(info(primary.port)["ckpt_syncs_done"]) == done and time.time() < end):
        writes(r, 1000, rnd)
        n += 1000
    # The 50/200 ms TTLs pass.  Replicas never expire keys themselves: only
    # the primary's DELs bring those keys down on their side.  Its active
    # expiry drops them a sample at a time, and KEYS (the snapshot) skips
    # expired keys without deleting them, so DBSIZE read on the primary
    # and then on a replica could straddle DELs still on their way (the
    # "replica N keys short" of earlier runs: every replica caught up
    # later).  SCAN deletes the expired keys it meets, as in Redis: after
    # a full SCAN and the replicas' catching up, nothing is left to expire.
    time.sleep(0.3)
    scan_all(client(primary.port))
    pinfo = wait_synced(primary, [rep1, rep2])
    dbs = [int(client(s.port)("DBSIZE")) for s in (primary, rep1, rep2)]
    check(dbs[0] == dbs[1] == dbs[2], "DBSIZE primary/replicas (expired keys not DELed?): %r" % dbs)
    for rep in (rep1, rep2):
        nk = same(primary, rep, "after 100k writes (replica port %d)" % rep.port)
    check(int(pinfo["connected_slaves"]) == 2, "connected_slaves: %r" % pinfo)
    print("ok: after %d writes both replicas match (%d keys, offset %s; the second one synced mid-writes, "
          "%s bytes of writes held back during its sync)" % (50000 + n, nk, pinfo["master_repl_offset"],
                                                            info(primary.port)["ckpt_sync_last_held_bytes"]))
    s = info(primary.port)
    check(int(s["ckpt_syncs_done"]) >= 3 and s["ckpt_syncs_failed"] == "0", "sync counters: %r" % s)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print("replication: all passed in %.1f s" % (time.time() - t0))
