"""rdb_dump.py - DUMP and RESTORE move every value between redis-ckpt and
redis-server 7.0 in both directions (redis-server's payloads use its compact
encodings: listpack, intset, quicklist); DUMP of short and integer strings
is byte-identical to redis-server's; RESTORE's errors (BUSYKEY, bad
checksum, bad data with a valid checksum, negative TTL, syntax) and its
REPLACE/ABSTTL options reply exactly as redis-server's.  Strings over 20
bytes are LZF-compressed in redis-ckpt's payloads (rdbcompression yes, as
Redis): compressible ones of every shape (runs past the longest back
reference, repeats 8191 bytes apart and just beyond, binary, random tails)
come out smaller than plain and redis-server restores them to the same
bytes; CONFIG SET rdbcompression no writes them plainly."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Server, check  # noqa: E402
from rdblib import client, crc64, diff, fill, snapshot  # noqa: E402


def copy_all(src, dst):
    keys = src("KEYS", "*")
    payloads = src.pipeline([["DUMP", k] for k in keys])
    dst.pipeline([["RESTORE", k, "0", p, "REPLACE"] for k, p in zip(keys, payloads)])
    return len(keys)


def main():
    rs = Server(kind="redis")
    rc = Server(args=["--save", "", "--heap-size", "128mb"])
    a, b = client(rs.port), client(rc.port)
    fill(a)
    n = copy_all(a, b)
    sa, _ = snapshot(a)
    sb, _ = snapshot(b)
    check(sa == sb, "redis-server -> redis-ckpt by DUMP/RESTORE: %s" % diff(sa, sb))
    print("ok: %d values DUMPed by redis-server (compact encodings) RESTOREd into redis-ckpt" % n)
    a("FLUSHALL")
    n = copy_all(b, a)
    sa, _ = snapshot(a)
    check(sa == sb, "redis-ckpt -> redis-server by DUMP/RESTORE: %s" % diff(sb, sa))
    print("ok: %d values DUMPed by redis-ckpt RESTOREd into redis-server" % n)

    for key in ("s:small", "s:int", "s:neg", "s:empty", "k:1"):
        pa, pb = a("DUMP", key), b("DUMP", key)
        check(pa == pb, "DUMP %s: redis-ckpt %r, redis-server %r" % (key, pb, pa))
    print("ok: DUMP of short and integer strings is byte-identical to redis-server's")

    good = a("DUMP", "l:small")
    body = bytearray(good[:-10])
    body[2] = 0xEE  # inside the listpack blob
    forged = bytes(body) + good[-10:-8]
    forged += crc64(forged).to_bytes(8, "little")
    future = str(int(time.time() * 1000) + 100000)
    cases = [["RESTORE", "s:small", "0", good], ["RESTORE", "new", "0", good[:-1] + b"x"],
             ["RESTORE", "new", "0", forged], ["RESTORE", "new", "-1", good], ["RESTORE", "new", "0", good, "BOGUS"],
             ["RESTORE", "new", "x", good], ["RESTORE", "new", "0", b"short"],
             ["RESTORE", "l:small", "0", good, "REPLACE"], ["RESTORE", "abs", future, good, "ABSTTL"],
             ["PTTL", "abs"], ["RESTORE", "gone", "1", good, "ABSTTL"], ["EXISTS", "gone"],
             ["RESTORE", "idle", "0", good, "IDLETIME", "-1"], ["DUMP", "missing"], ["LRANGE", "l:small", "0", "-1"]]
    bad = 0
    for cmd in cases:
        ra, rb = a.c.call(*cmd), b.c.call(*cmd)
        if cmd[0] == "PTTL":  # a few ms apart
            ok = abs(int(ra[1:-2]) - int(rb[1:-2])) < 5000
        else:
            ok = ra == rb
        if not ok:
            bad += 1
            print("MISMATCH %r: redis-ckpt %r, redis-server %r" % ([x[:20] for x in cmd], rb, ra))
    check(bad == 0, "%d RESTORE cases differ from redis-server" % bad)
    print("ok: %d RESTORE/DUMP cases (errors, REPLACE, ABSTTL) reply as redis-server's" % len(cases))
    lzf(a, b)


def lzf_cases():
    rnd = random.Random(5)
    blob = bytes(rnd.randrange(256) for _ in range(9000))
    return {
        "lzf:21": b"a" * 21, "lzf:run": b"z" * 100000, "lzf:abc": b"abc" * 3000,
        "lzf:words": b" ".join(b"word%d" % (i % 37) for i in range(5000)),
        "lzf:far": blob[:8191] + blob[:300],  # a repeat at the largest distance
        "lzf:toofar": blob[:8193] + blob[:300],  # just past it: literals
        "lzf:bin": bytes(range(256)) * 40, "lzf:tail": b"x" * 500 + blob[:700],
        "lzf:mix": b"".join(blob[i:i + rnd.randrange(1, 40)] * rnd.randrange(1, 6) for i in range(0, 8000, 40)),
        "lzf:random": blob[:100],  # incompressible: plain
    }


def lzf(a, b):
    cases = lzf_cases()
    b.pipeline([["SET", k, v] for k, v in cases.items()])
    compressed = 0
    for k, v in cases.items():
        p = b("DUMP", k)
        a("RESTORE", k, "0", p, "REPLACE")
        check(a("GET", k) == v, "%s: redis-server restored other bytes from redis-ckpt's LZF payload" % k)
        check((len(p) < len(v)) == (k not in ("lzf:random", "lzf:toofar")),
              "%s: DUMP of %d bytes is %d bytes (LZF expected only where something repeats within 8 KB)"
              % (k, len(v), len(p)))
        compressed += len(p) < len(v)
    check(b("CONFIG", "SET", "rdbcompression", "no") == b"OK", "CONFIG SET rdbcompression no")
    p = b("DUMP", "lzf:abc")
    check(len(p) > 9000, "rdbcompression no: DUMP of 9000 bytes is %d" % len(p))
    b("CONFIG", "SET", "rdbcompression", "yes")
    print("ok: LZF in redis-ckpt's payloads: %d strings (runs, far repeats, binary) smaller than plain, restored "
          "by redis-server to the same bytes; rdbcompression no writes them plainly" % compressed)


if __name__ == "__main__":
    t0 = time.time()
    main()
    print("rdb_dump: all passed in %.1f s" % (time.time() - t0))
