"""sync_stream.py - the bytes redis-ckpt sends around a full sync, read by a
raw replica that holds the transfer open (it stops reading, so the helper
blocks on the full socket) while another client writes:

 - nothing follows the RDB's EOF mark until the replica's first REPLCONF
   ACK: a reader of an EOF-marked RDB (redis-server, redis-cli --rdb)
   compares the last 40 bytes of each read with the mark, and bytes glued
   behind it hid the mark (the replica, or redis-cli --rdb, waited for
   ever);
 - after the ACK the stream is exactly the writes made after the sync's
   instant: the RDB loaded into redis-server plus the stream replayed into
   it equals the primary, keys, values and absolute expiry times (an expiry
   travels as an absolute time, as Redis 7.0 sends it: a relative one
   re-based on the replay's clock would differ);
 - a client that asked for the RDB only (REPLCONF rdb-only 1, as redis-cli
   --rdb) gets the RDB and the end of the connection, no stream;
 - a held-back stream of many MB goes out in slices (the primary's output
   buffer for the replica stays under a slice while the replica does not
   read, instead of holding the whole stream), still every byte, in order,
   with writes made during the drain after it;
 - redis-cli --rdb under a stream of writes ends and writes a valid file."""
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Server, _parse, check, encode, tmpdir  # noqa: E402
from rdblib import client, info, same  # noqa: E402

# Incompressible values well past what the two sockets' buffers hold (the
# sender's grows to tcp_wmem's 4 MB): the helper cannot finish before the
# raw replica reads on.
NBIG, BIGLEN = 2000, 6000


class RawReplica:
    def __init__(self, port, rdb_only=False):
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        self.s.connect(("127.0.0.1", port))
        self.s.settimeout(30)
        self.buf = b""
        if rdb_only:
            self.s.sendall(encode("REPLCONF", "rdb-only", "1"))
            check(self.line() == b"+OK", "REPLCONF rdb-only 1")
        self.s.sendall(encode("REPLCONF", "capa", "eof", "capa", "psync2"))
        check(self.line() == b"+OK", "REPLCONF capa")
        self.s.sendall(encode("SYNC") if rdb_only else encode("PSYNC", "?", "-1"))
        self.offset = None
        if not rdb_only:
            l = self.line().split()
            check(l[0] == b"+FULLRESYNC" and len(l) == 3, "PSYNC answer %r" % l)
            self.offset = int(l[2])
        l = self.line()
        check(l.startswith(b"$EOF:") and len(l) == 45, "RDB header %r" % l)
        self.mark = l[5:]

    def recv(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError
        self.buf += d

    def line(self):
        while b"\r\n" not in self.buf:
            self.recv()
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l

    def rdb(self):
        """Reads up to the EOF mark; returns the RDB and what came with it."""
        while self.mark not in self.buf:
            self.recv()
        i = self.buf.index(self.mark)
        rdb, extra = self.buf[:i], self.buf[i + 40:]
        self.buf = b""
        return rdb, extra

    def more(self, wait):
        """What arrives within wait seconds (b'' if nothing; None at EOF)."""
        self.s.settimeout(wait)
        try:
            d = self.s.recv(65536)
            return d if d else None
        except socket.timeout:
            return b""
        finally:
            self.s.settimeout(30)


def sync_running(port):
    return info(port)["ckpt_sync_in_progress"] == "1"


def writes_during(r, tag):
    """Writes of every kind that carry an expiry, and some that do not."""
    payload = r("DUMP", "pre:h")
    cmds = [["SET", "%s:px" % tag, "a", "PX", "3600000"], ["SET", "%s:ex" % tag, "b", "EX", "7200"],
            ["SETEX", "%s:setex" % tag, "5000", "c"], ["PSETEX", "%s:psetex" % tag, "4000000", "d"],
            ["EXPIRE", "pre:s", "9000"], ["PEXPIRE", "pre:l", "8000000"], ["EXPIREAT", "pre:n", str(int(time.time()) + 999)],
            ["GETEX", "pre:g", "EX", "6000"], ["SET", "pre:keep", "z", "KEEPTTL"],
            ["RESTORE", "%s:restored" % tag, "7000000", payload], ["SET", "%s:gone" % tag, "x", "EX", "100"],
            ["EXPIRE", "%s:gone" % tag, "-1"], ["INCR", "pre:n"], ["RPUSH", "pre:l", "w"], ["DEL", "big:3"],
            ["SET", "%s:plain" % tag, "p"]]
    cmds += [["SET", "%s:k%d" % (tag, i), "v%d" % i, "PX", str(100000 + i)] for i in range(300)]
    r.pipeline(cmds)


def pexpiretimes(port, keys):
    c = client(port)
    return {k: c("PEXPIRETIME", k) for k in keys}


def stream_after_ack(primary, r):
    """A full sync held open while writes go on: nothing after the mark
    before the ACK, then exactly the writes."""
    rr = RawReplica(primary.port)
    rr.recv()
    check(sync_running(primary.port), "the sync's helper should block on the raw replica's full socket")
    writes_during(r, "w1")
    rdb, extra = rr.rdb()
    end = time.time() + 30
    while sync_running(primary.port) and time.time() < end:
        time.sleep(0.02)
    extra += rr.more(0.5) or b""
    check(extra == b"", "%d bytes followed the EOF mark before the first ACK (a reader misses the mark): %r"
          % (len(extra), extra[:80]))
    rr.s.sendall(encode("REPLCONF", "ACK", str(rr.offset)))
    want = int(info(primary.port)["master_repl_offset"]) - rr.offset
    while len(rr.buf) < want:
        rr.recv()
    stream = rr.buf
    check(len(stream) == want, "stream after the ACK: %d bytes, the offsets say %d" % (len(stream), want))
    print("ok: nothing after the EOF mark until the first ACK, then %d bytes of stream (%d + %d = the primary's "
          "offset)" % (len(stream), rr.offset, want))

    cmds = replay_equals(primary, rdb, stream)
    rr.s.close()
    print("ok: RDB + the stream replayed into redis-server = the primary: %d commands, every expiry "
          "time identical to the ms" % cmds)


def replay_equals(primary, rdb, stream):
    """The RDB plus the stream make the primary: no write missing, doubled
    or out of order; returns the number of commands replayed."""
    d = tmpdir()
    with open(os.path.join(d, "sync.rdb"), "wb") as f:
        f.write(rdb)
    time.sleep(1.1)  # a relative expiry replayed now would land >= 1 s later
    rebuilt = Server(kind="redis", args=["--dbfilename", "sync.rdb"], dir=d)
    cmds, p = 0, 0
    while p < len(stream):
        _, p = _parse(stream, p)
        cmds += 1
    c = socket.create_connection(("127.0.0.1", rebuilt.port))
    c.sendall(stream)
    got, buf = 0, b""
    while got < cmds:
        buf += c.recv(65536)
        got = buf.count(b"\r\n")  # every reply here is one line (+OK, :n, -ERR ...)
    check(b"-" not in b"".join(x[:1] for x in buf.split(b"\r\n")), "replaying the stream: %r" % buf[:300])
    n = same(primary, rebuilt, "RDB + stream replayed into redis-server")
    keys = [k.decode() for k in client(primary.port)("KEYS", "*")]
    a, b = pexpiretimes(primary.port, keys), pexpiretimes(rebuilt.port, keys)
    bad = [(k, a[k], b[k]) for k in keys if a[k] != b[k]]
    check(not bad, "absolute expiry times differ after the replay (relative TTL propagated?): %r" % bad[:5])
    check(sum(1 for k in keys if a[k] > 0) >= 300, "expiring keys: %d" % sum(1 for k in keys if a[k] > 0))
    rebuilt.stop()
    print("ok: %d keys identical" % n)
    return cmds


def replica_obl(port, rr):
    """The primary's output buffer for raw replica rr (CLIENT LIST obl)."""
    me = "127.0.0.1:%d" % rr.s.getsockname()[1]
    for line in client(port)("CLIENT", "LIST").decode().splitlines():
        f = dict(x.split("=", 1) for x in line.split() if "=" in x)
        if f.get("addr") == me:
            return int(f["obl"])
    check(False, "the raw replica %s is not in CLIENT LIST" % me)


HELD_MB = 12


def held_stream_paced(primary, r):
    """~12 MB of writes held back during a sync, then the replica's ACK:
    the primary passes them to the socket in slices (REPL_DRAIN_SLICE, 512
    KiB) as each has left, not all at once (one 12 MB copy and write in one
    step of the event loop); writes made meanwhile come after them."""
    rr = RawReplica(primary.port)
    rr.recv()
    check(sync_running(primary.port), "the sync's helper should block on the raw replica's full socket")
    val = os.urandom(4000)
    for i in range(0, HELD_MB * 256, 256):  # 4 kB values: HELD_MB MB of stream
        r.pipeline([["SET", "held:%d" % (j % 500), val[j % 97:] + b"%d" % j] for j in range(i, i + 256)])
    rdb, _ = rr.rdb()
    end = time.time() + 30
    while sync_running(primary.port) and time.time() < end:
        time.sleep(0.02)
    held = int(info(primary.port)["master_repl_offset"]) - rr.offset
    check(held > (HELD_MB - 1) << 20, "held back %d bytes" % held)
    rr.s.sendall(encode("REPLCONF", "ACK", str(rr.offset)))
    # the replica does not read: the socket's buffers fill (a few MB), the
    # rest of the held stream must stay out of the output buffer
    time.sleep(0.5)
    r.pipeline([["SET", "held:%d" % j, "after-%d" % j] for j in range(0, 500, 3)])  # during the drain
    obl = replica_obl(primary.port, rr)
    check(obl <= 512 << 10, "output buffer of the not-reading replica %d bytes after a %d-byte held stream "
          "(should be at most one 512 KiB slice)" % (obl, held))
    want = int(info(primary.port)["master_repl_offset"]) - rr.offset
    rr.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    while len(rr.buf) < want:
        rr.recv()
    stream = rr.buf
    check(len(stream) == want, "stream after the ACK: %d bytes, the offsets say %d" % (len(stream), want))
    print("ok: %d bytes held back went out in slices (output buffer %d bytes while the replica did not read), "
          "then the writes made during the drain: %d bytes in all" % (held, obl, want))
    cmds = replay_equals(primary, rdb, stream)
    rr.s.close()
    print("ok: RDB + the paced stream replayed into redis-server = the primary (%d commands)" % cmds)


def rdb_only(primary, r):
    rr = RawReplica(primary.port, rdb_only=True)
    rr.recv()
    check(sync_running(primary.port), "the rdb-only sync's helper should block on the full socket")
    writes_during(r, "w2")
    rdb, extra = rr.rdb()
    end = time.time() + 10
    while extra == b"" and time.time() < end:
        m = rr.more(0.2)
        if m is None:
            break
        extra += m
    check(extra == b"" and m is None, "rdb-only: after the EOF mark %r, then %s" %
          (extra[:80], "EOF" if m is None else "no EOF within 10 s"))
    check(rdb.startswith(b"REDIS") and len(rdb) > NBIG * BIGLEN, "rdb-only: RDB of %d bytes" % len(rdb))
    print("ok: REPLCONF rdb-only 1: the RDB (%d bytes), then the end of the connection, no stream" % len(rdb))


def redis_cli_rdb_under_writes(primary):
    stop = threading.Event()

    def writer():
        w = client(primary.port)
        i = 0
        while not stop.is_set():
            w.pipeline([["SET", "cli:%d" % (i + j), "v", "PX", "600000"] for j in range(200)])
            i += 200

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    out = os.path.join(tmpdir(), "cli.rdb")
    try:
        p = subprocess.run(["redis-cli", "-p", str(primary.port), "--rdb", out], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        check(False, "redis-cli --rdb under writes did not end within 60 s")
    finally:
        stop.set()
        t.join()
    check(p.returncode == 0, "redis-cli --rdb: %s %s" % (p.stdout, p.stderr))
    p = subprocess.run(["redis-check-rdb", out], capture_output=True, timeout=120)
    check(p.returncode == 0 and b"RDB looks OK" in p.stdout, "redis-check-rdb: %s" % p.stdout[-500:])
    print("ok: redis-cli --rdb under a stream of writes ends; redis-check-rdb OK")


def main():
    primary = Server(args=["--heap-size", "256mb", "--save", ""])
    r = client(primary.port)
    big = os.urandom(BIGLEN * 2)
    for i in range(0, NBIG, 200):
        r.pipeline([["SET", "big:%d" % j, big[j % BIGLEN:j % BIGLEN + BIGLEN]] for j in range(i, i + 200)])
    r.pipeline([["SET", "pre:s", "s"], ["RPUSH", "pre:l", "1", "2"], ["SET", "pre:n", "5"], ["SET", "pre:g", "g"],
                ["SET", "pre:keep", "k", "PX", "5000000"], ["HSET", "pre:h", "f", "v"]])
    stream_after_ack(primary, r)
    held_stream_paced(primary, r)
    rdb_only(primary, r)
    redis_cli_rdb_under_writes(primary)
    s = info(primary.port)
    check(s["ckpt_syncs_failed"] == "0", "sync counters: %r" % s)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print("sync_stream: all passed in %.1f s" % (time.time() - t0))
