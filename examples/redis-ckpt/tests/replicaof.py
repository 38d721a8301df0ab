"""replicaof.py - REPLICAOF: redis-ckpt as a replica of a real redis-server
7.0 loads its RDB (every type and encoding) and applies its command stream:
it matches the primary after the full sync and after 100k writes, refuses
writes from its own clients (READONLY), acknowledges offsets (the primary's
INFO and WAIT see it), and REPLICAOF NO ONE makes it a primary again."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Server, check  # noqa: E402
from rdblib import client, fill, info, same, wait_synced, writes  # noqa: E402


def main():
    rs = Server(kind="redis")
    a = client(rs.port)
    fill(a)
    rc = Server(args=["--save", "", "--heap-size", "256mb"])
    b = client(rc.port)
    b("SET", "old", "data")  # replaced by the primary's dataset
    check(b("REPLICAOF", "127.0.0.1", str(rs.port)) == b"OK", "REPLICAOF")
    pinfo = wait_synced(rs, [rc])
    check(pinfo["slave0"].startswith("ip=127.0.0.1,port=%d,state=online" % rc.port), "primary INFO: %r" % pinfo)
    rinfo = info(rc.port)
    check(rinfo["role"] == "slave" and rinfo["master_link_status"] == "up", "replica INFO: %r" % rinfo)
    n = same(rs, rc, "after the full sync")
    print("ok: redis-ckpt replica of redis-server after the full sync: %d keys identical" % n)
    try:
        b("SET", "x", "1")
        check(False, "a write to the replica was accepted")
    except RuntimeError as e:
        check("READONLY" in str(e), "write to the replica: %s" % e)
    writes(a, 100000, random.Random(3))
    time.sleep(0.3)
    a("KEYS", "*")  # the primary expires what is due and sends DELs
    wait_synced(rs, [rc])
    check(a("WAIT", "1", "5000") == 1, "WAIT 1 on the primary: the replica's ACK")
    n = same(rs, rc, "after 100k writes")
    da, db = int(a("DBSIZE")), int(b("DBSIZE"))
    check(da == db, "DBSIZE primary %d, replica %d" % (da, db))
    print("ok: after 100k writes on redis-server the redis-ckpt replica matches (%d keys); READONLY; WAIT sees "
          "its ACKs" % n)
    check(b("REPLICAOF", "NO", "ONE") == b"OK", "REPLICAOF NO ONE")
    check(b("SET", "x", "1") == b"OK", "write after REPLICAOF NO ONE")
    check(info(rc.port)["role"] == "master", "role after NO ONE")
    print("ok: REPLICAOF NO ONE: writable primary again")


if __name__ == "__main__":
    t0 = time.time()
    main()
    print("replicaof: all passed in %.1f s" % (time.time() - t0))
