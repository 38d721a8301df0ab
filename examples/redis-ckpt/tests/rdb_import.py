"""rdb_import.py - a dump.rdb written by redis-server 7.0 (every type, in
its compact and large encodings, TTLs, LZF and integer strings) loads into
redis-ckpt with identical contents; the RDB is never overwritten (checkpoints
go to dump.rdb.ckpt, which the next start restores); damaged RDBs
(truncations, flipped bytes, keys in database 1) are refused with an offset
and a reason, and nothing is written."""
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Server, check, tmpdir  # noqa: E402
from rdblib import client, diff, fill, old_rdb, sha, snapshot, ttls_close  # noqa: E402


def make_rdb():
    rs = Server(kind="redis")
    r = client(rs.port)
    fill(r)
    for key, enc in (("h:small", b"listpack"), ("set:ints", b"intset"), ("z:small", b"listpack"),
                     ("l:big", b"quicklist"), ("h:big", b"hashtable"), ("z:big", b"skiplist"),
                     ("set:big", b"hashtable"), ("s:int", b"int")):
        check(r("OBJECT", "ENCODING", key) == enc, "redis-server: %s is not %s" % (key, enc))
    want, ttls = snapshot(r)
    r("SAVE")
    rs.stop()
    return os.path.join(rs.dir, "dump.rdb"), want, ttls


def refused(rdb_bytes, what):
    """Starts redis-ckpt on a damaged RDB: it must exit 1, log the offset and
    reason, and leave the file alone with no image next to it."""
    d = tmpdir()
    path = os.path.join(d, "dump.rdb")
    with open(path, "wb") as f:
        f.write(rdb_bytes)
    srv = Server(args=["--dbfilename", "dump.rdb", "--save", ""], dir=d, wait=False)
    try:
        rc = srv.proc.wait(timeout=60)
    except Exception:
        srv.kill9()
        rc = None
    out = srv.output()
    check(rc == 1, "%s: redis-ckpt exited %r (want 1):\n%s" % (what, rc, out))
    check("Can't import the RDB file" in out and "offset " in out, "%s: no offset/reason logged:\n%s" % (what, out))
    with open(path, "rb") as f:
        check(f.read() == rdb_bytes, "%s: the RDB was modified" % what)
    check(not os.path.exists(path + ".ckpt"), "%s: an image was written" % what)
    line = [x for x in out.splitlines() if "Can't import" in x][0]
    return line.split("': ", 1)[1] if "': " in line else line


def main():
    rdb, want, want_ttls = make_rdb()
    d = tmpdir()
    shutil.copy(rdb, os.path.join(d, "dump.rdb"))
    before = sha(os.path.join(d, "dump.rdb"))
    srv = Server(args=["--dbfilename", "dump.rdb", "--save", ""], dir=d)
    r = client(srv.port)
    got, got_ttls = snapshot(r)
    check(got == want, "imported keyspace differs (%d vs %d keys): %s" % (len(got), len(want), diff(got, want)))
    msg = ttls_close(want_ttls, got_ttls, 60000)
    check(not msg, "TTLs after import: " + msg)
    print("ok: %d keys of every type and encoding imported from redis-server's RDB, identical" % len(got))

    r("SET", "after-import", "1")
    r("SAVE")
    check(sha(os.path.join(d, "dump.rdb")) == before, "SAVE overwrote the RDB")
    check(os.path.exists(os.path.join(d, "dump.rdb.ckpt")), "SAVE did not write dump.rdb.ckpt")
    srv.stop()
    srv2 = Server(args=["--dbfilename", "dump.rdb", "--save", ""], dir=d)
    r2 = client(srv2.port)
    check(r2("GET", "after-import") == b"1", "restart did not restore the image (after-import missing)")
    got2, _ = snapshot(r2)
    del got2[b"after-import"]
    check(got2 == want, "restart: %s" % diff(got2, want))
    srv2.stop()
    print("ok: checkpoints go to dump.rdb.ckpt, the RDB is untouched, a restart restores the image")

    # Redis 6's encodings, which 7.0 still loads: redis-server and redis-ckpt
    # must read the same keyspace from the same file
    blob = old_rdb()
    snaps = []
    for kind in ("redis", "ckpt"):
        d = tmpdir()
        with open(os.path.join(d, "old.rdb"), "wb") as f:
            f.write(blob)
        extra = ["--save", ""] if kind == "ckpt" else []
        s = Server(kind=kind, args=["--dbfilename", "old.rdb"] + extra, dir=d)
        snaps.append(snapshot(client(s.port)))
        s.stop()
    (a, ta), (b, tb) = snaps
    check(len(a) == 9 and a == b, "RDB 9 with ziplists: redis-server %d keys, redis-ckpt %d: %s" % (len(a), len(b), diff(a, b)))
    check(not ttls_close(ta, tb, 60000), "RDB 9 TTLs: " + ttls_close(ta, tb, 60000))
    print("ok: an RDB 9 with ziplist lists/hashes/zsets, quicklist v1, string-score zsets, int strings and a "
          "seconds TTL loads as redis-server loads it")

    with open(rdb, "rb") as f:
        data = f.read()
    n = len(data)
    cases = [(data[:5], "truncated to 5 bytes"), (data[:n // 3], "truncated to a third"),
             (data[:n // 2], "truncated to half"), (data[:n - 9], "no checksum trailer"),
             (data[:n - 3], "truncated checksum")]
    for frac in (0.2, 0.5, 0.8, 0.99):
        i = int(n * frac)
        b = bytearray(data)
        b[i] ^= 0x5a
        cases.append((bytes(b), "byte %d of %d flipped" % (i, n)))
    b = bytearray(data)
    b[5:9] = b"0099"
    cases.append((bytes(b), "unknown RDB version"))
    for blob, what in cases:
        reason = refused(blob, what)
        print("ok: refused (%s): %s" % (what, reason))

    # a key in database 1: refused, redis-ckpt has one database
    rs = Server(kind="redis")
    r = client(rs.port)
    r.pipeline([["SET", "a", "1"], ["SELECT", "1"], ["SET", "b", "2"], ["SAVE"]])
    rs.stop()
    with open(os.path.join(rs.dir, "dump.rdb"), "rb") as f:
        reason = refused(f.read(), "keys in database 1")
    check("database 1" in reason, "database 1: %s" % reason)
    print("ok: refused (keys in database 1): %s" % reason)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print("rdb_import: all passed in %.1f s" % (time.time() - t0))
