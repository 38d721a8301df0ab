"""replicaof.py - REPLICAOF: redis-ckpt as a replica of a real redis-server
7.0 loads its RDB (every type and encoding) and applies its command stream:
it matches the primary after the full sync and after 100k writes, refuses
writes from its own clients (READONLY), acknowledges offsets (the primary's
INFO and WAIT see it), and REPLICAOF NO ONE makes it a primary again.
The RDB's transfer does not block the event loop: a primary that sends its
RDB over 2 s leaves clients served (the old dataset) meanwhile."""
import os
import random
import socket
import sys
import threading
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
    # SCAN deletes the keys that are due, and the primary sends their DELs
    # (KEYS only skips them: a DBSIZE could then straddle DELs in flight)
    cursor = b"0"
    while True:
        cursor, _ = a("SCAN", cursor, "COUNT", "1000")
        if cursor == b"0":
            break
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


class SlowPrimary(threading.Thread):
    """A primary that speaks the replication handshake and sends @rdb in 20
    pieces over @seconds, then the mark and one command of stream."""

    def __init__(self, rdb, seconds):
        super().__init__(daemon=True)
        self.rdb, self.seconds = rdb, seconds
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.sent_at = None

    def run(self):
        c, _ = self.lsock.accept()
        f = c.makefile("rb")
        for answer in (b"+PONG", b"+OK", b"+OK"):  # PING, REPLCONF listening-port, REPLCONF capa
            f.readline()
            c.sendall(answer + b"\r\n")
        f.readline()  # PSYNC ? -1
        mark = b"m" * 40
        c.sendall(b"+FULLRESYNC " + b"a" * 40 + b" 0\r\n$EOF:" + mark + b"\r\n")
        step = len(self.rdb) // 20 + 1
        for i in range(0, len(self.rdb), step):
            c.sendall(self.rdb[i:i + step])
            time.sleep(self.seconds / 20)
        c.sendall(mark + b"*3\r\n$3\r\nSET\r\n$4\r\nlast\r\n$1\r\n1\r\n")
        self.sent_at = time.time()
        while f.readline():  # REPLCONF ACKs until the test ends
            pass


def transfer_in_background():
    rs = Server(kind="redis")
    a = client(rs.port)
    fill(a)
    a("SAVE")
    with open(os.path.join(rs.dir, "dump.rdb"), "rb") as f:
        rdb = f.read()
    a("SET", "last", "1")  # what the stream will add
    primary = SlowPrimary(rdb, 2.0)
    primary.start()
    rc = Server(args=["--save", "", "--heap-size", "256mb"])
    b = client(rc.port)
    b("SET", "old", "data")
    check(b("REPLICAOF", "127.0.0.1", str(primary.port)) == b"OK", "REPLICAOF the slow primary")
    worst, polls, in_progress = 0.0, 0, 0
    while primary.sent_at is None:
        t = time.time()
        check(b("GET", "old") == b"data", "the old dataset is served during the transfer")
        worst = max(worst, time.time() - t)
        polls += 1
        in_progress += info(rc.port).get("master_sync_in_progress") == "1"
        time.sleep(0.02)
    check(polls >= 20 and in_progress >= polls // 2 and worst < 0.5,
          "during a 2 s transfer: %d GETs answered, slowest %.3f s, %d saw master_sync_in_progress:1"
          % (polls, worst, in_progress))
    end = time.time() + 30
    while b("GET", "last") != b"1" and time.time() < end:
        time.sleep(0.02)
    n = same(rs, rc, "after the slow primary's RDB and stream")
    print("ok: REPLICAOF a primary sending its RDB over 2 s: %d GETs of the old data answered meanwhile (slowest "
          "%.1f ms), then %d keys identical" % (polls, worst * 1e3, n))


if __name__ == "__main__":
    t0 = time.time()
    main()
    transfer_in_background()
    print("replicaof: all passed in %.1f s" % (time.time() - t0))
