"""rdblib.py - helpers shared by the RDB and replication tests: a dataset
that exercises every type in both its compact and its large Redis encodings,
and a comparable snapshot of a server's whole keyspace (via redis-py)."""
import os
import random

import time

from rclib import Conn, Err, check, encode, parse


class Client:
    """A small RESP client over rclib.Conn (the tests must not depend on
    redis-py: the python3 first on PATH may lack it)."""

    def __init__(self, port, timeout=60):
        self.c = Conn(port, timeout=timeout)

    def __call__(self, *args):
        v = parse(self.c.call(*args))
        if isinstance(v, Err):
            raise RuntimeError("%r: %s" % (args[:3], v))
        return v

    def pipeline(self, cmds):
        """Sends all, then reads all the replies (errors raise)."""
        out = []
        for i in range(0, len(cmds), 1000):
            chunk = cmds[i:i + 1000]
            self.c.send_raw(b"".join(encode(*a) for a in chunk))
            for a in chunk:
                v = parse(self.c.read_reply())
                if isinstance(v, Err):
                    raise RuntimeError("%r: %s" % (a[:3], v))
                out.append(v)
        return out

    def close(self):
        self.c.close()


def client(port):
    return Client(port)


def fill(r, seed=1):
    """Every type, small (listpack/intset encodings in Redis 7.0) and large
    (quicklist nodes, hashtable, skiplist), integer and LZF-compressible
    strings, binary data, TTLs."""
    rnd = random.Random(seed)
    cmds = [
        ["SET", "s:small", "v"], ["SET", "s:int", "12345"], ["SET", "s:neg", "-7"],
        ["SET", "s:bigint", str(2 ** 40)], ["SET", "s:empty", ""],
        ["SET", "s:lzf", "abc" * 2000],  # compressible: LZF in the RDB
        ["SET", "s:bin", bytes(rnd.randrange(256) for _ in range(300))],
        ["SET", "s:ttl", "t", "EX", "1000"], ["SET", "s:pttl", "t", "PX", "900000"],
        ["RPUSH", "l:small", "a", "b", "1", "-2", "300000"],
        ["RPUSH", "l:big"] + ["elem-%d-%s" % (i, "x" * (i % 50)) for i in range(3000)],
        ["RPUSH", "l:ints"] + [str(i) for i in range(-100, 400)],
        ["RPUSH", "l:lzf", "q" * 5000, "r" * 70],
        ["HSET", "h:small", "f1", "v1", "f2", "22", "f3", ""],
        ["HSET", "h:big"] + [x for i in range(500) for x in ("field-%d" % i, "value-%d" % (i * 7))],
        ["HSET", "h:big", "long", "w" * 100],  # past hash-max-listpack-value: hashtable
        ["HSET", "h:ttl", "f", "v"], ["EXPIRE", "h:ttl", "5000"],
        ["SADD", "set:ints"] + [str(i) for i in range(100)],
        ["SADD", "set:bigints", "-1"] + [str(2 ** 33 + i) for i in range(50)],
        ["SADD", "set:strs", "a", "b", "c"],
        ["SADD", "set:big"] + ["m%d" % i for i in range(1000)],
        ["ZADD", "z:small", "1", "a", "2.5", "b", "-3", "c", "1e20", "d"],
        ["ZADD", "z:big"] + [x for i in range(400) for x in (repr(i * 1.25), "m%d" % i)],
        ["ZADD", "z:inf", "-inf", "lo", "+inf", "hi", "0", "mid"],
    ] + [["SET", "k:%d" % i, "v%d" % i] for i in range(200)]
    r.pipeline(cmds)


def snapshot(r):
    """{key: (type, value)} plus {key: ttl in ms (-1 none)}."""
    out, ttls = {}, {}
    keys = r("KEYS", "*")
    types = r.pipeline([["TYPE", k] for k in keys])
    read = {b"string": ["GET"], b"list": ["LRANGE", None, "0", "-1"], b"hash": ["HGETALL"],
            b"set": ["SMEMBERS"], b"zset": ["ZRANGE", None, "0", "-1", "WITHSCORES"]}
    cmds = []
    for k, t in zip(keys, types):
        c = list(read.get(t, ["TYPE"]))
        if len(c) == 1:
            c.append(k)
        else:
            c[1] = k
        cmds.append(c)
    vals = r.pipeline(cmds)
    pttls = r.pipeline([["PTTL", k] for k in keys])
    for k, t, v, ttl in zip(keys, types, vals, pttls):
        if t == b"none" or v is None or ttl == -2:
            continue  # expired between KEYS and the reads
        if t == b"hash":
            v = tuple(sorted(zip(v[0::2], v[1::2])))
        elif t == b"set":
            v = tuple(sorted(v))
        elif t == b"zset":
            v = tuple(zip(v[0::2], [float(x) for x in v[1::2]]))
        elif isinstance(v, list):
            v = tuple(v)
        out[k] = (t, v)
        ttls[k] = ttl
    return out, ttls


def diff(a, b, limit=5):
    """A short description of how two snapshots differ ('' if equal)."""
    msgs = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            msgs.append("%r: %r != %r" % (k, str(a.get(k))[:120], str(b.get(k))[:120]))
            if len(msgs) >= limit:
                break
    return "; ".join(msgs)


def ttls_close(a, b, slack_ms):
    """'' when both have the same keys with a TTL and each differs by less
    than slack_ms."""
    for k in a:
        ta, tb = a[k], b.get(k)
        if (ta < 0) != (tb is None or tb < 0):
            return "%r: ttl %r vs %r" % (k, ta, tb)
        if ta >= 0 and abs(ta - tb) > slack_ms:
            return "%r: ttl %d vs %d ms" % (k, ta, tb)
    return ""


def sha(path):
    import hashlib
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def info(port, section="replication"):
    text = client(port)("INFO", section).decode()
    return dict(line.split(":", 1) for line in text.split("\r\n") if ":" in line and not line.startswith("#"))


def wait_synced(primary, replicas, timeout=120):
    """Until every replica is online and has applied the whole stream."""
    end = time.time() + timeout
    while time.time() < end:
        p = info(primary.port)
        off = int(p["master_repl_offset"])
        ok = int(p["connected_slaves"]) == len(replicas) and all(
            "state=online" in p.get("slave%d" % i, "") for i in range(len(replicas)))
        for r in replicas:
            i = info(r.port)
            ok = ok and i.get("master_link_status") == "up" and int(i.get("slave_repl_offset", -1)) >= off
        if ok:
            return p
        time.sleep(0.1)
    fail_info = [info(r.port) for r in replicas]
    check(False, "replicas not in sync after %ds: primary %r, replicas %r" % (timeout, info(primary.port), fail_info))


def same(primary, replica, what):
    a, ta = snapshot(client(primary.port))
    b, tb = snapshot(client(replica.port))
    check(a == b, "%s: replica differs (%d vs %d keys): %s" % (what, len(a), len(b), diff(a, b)))
    msg = ttls_close(ta, tb, 60000)
    check(not msg, "%s: TTLs: %s" % (what, msg))
    return len(a)


def writes(r, n, rnd):
    """n mixed writes in pipelines of 1000: every type, deletes, TTLs (some
    short enough to expire during the test), SPOP."""
    cmds = []
    for i in range(n):
        k = rnd.randrange(5000)
        op = rnd.randrange(12)
        if op == 0:
            cmds.append(["SET", "w:s:%d" % k, "v%d" % i])
        elif op == 1:
            cmds.append(["INCR", "w:n:%d" % (k % 100)])
        elif op == 2:
            cmds.append(["RPUSH", "w:l:%d" % (k % 50), "e%d" % i])
        elif op == 3:
            cmds.append(["LPOP", "w:l:%d" % (k % 50)])
        elif op == 4:
            cmds.append(["HSET", "w:h:%d" % (k % 50), "f%d" % (k % 300), "v%d" % i])
        elif op == 5:
            cmds.append(["SADD", "w:set:%d" % (k % 50), "m%d" % (k % 400)])
        elif op == 6:
            cmds.append(["SPOP", "w:set:%d" % (k % 50)])
        elif op == 7:
            cmds.append(["ZADD", "w:z:%d" % (k % 50), str(rnd.random() * 100), "m%d" % (k % 300)])
        elif op == 8:
            cmds.append(["DEL", "w:s:%d" % rnd.randrange(5000)])
        elif op == 9:
            cmds.append(["SET", "w:ttl:%d" % k, "x", "PX", str(rnd.choice([50, 200, 3600000]))])
        elif op == 10:
            cmds.append(["EXPIRE", "w:s:%d" % k, "100000"])
        else:
            cmds.append(["HSET", "k:%d" % (k % 200) + ":h", "f", str(i)])
    r.pipeline(cmds)




def crc64(data):
    """Redis's CRC-64 (Jones, reflected), to forge payloads whose checksum
    is right but whose contents are not."""
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x95ac9329ac4bc9b5 if crc & 1 else crc >> 1
    return crc


def _rstr(b):
    if isinstance(b, str):
        b = b.encode()
    n = len(b)
    if n < 64:
        return bytes([n]) + b
    if n < 16384:
        return bytes([0x40 | n >> 8, n & 0xff]) + b
    return b"\x80" + n.to_bytes(4, "big") + b


def _zl_entry(prevlen, v):
    pl = bytes([prevlen]) if prevlen < 254 else b"\xfe" + prevlen.to_bytes(4, "little")
    if isinstance(v, int):
        if 0 <= v <= 12:
            enc = bytes([0xf1 + v])
        elif -128 <= v < 128:
            enc = b"\xfe" + v.to_bytes(1, "little", signed=True)
        elif -2 ** 15 <= v < 2 ** 15:
            enc = b"\xc0" + v.to_bytes(2, "little", signed=True)
        elif -2 ** 23 <= v < 2 ** 23:
            enc = b"\xf0" + v.to_bytes(3, "little", signed=True)
        elif -2 ** 31 <= v < 2 ** 31:
            enc = b"\xd0" + v.to_bytes(4, "little", signed=True)
        else:
            enc = b"\xe0" + v.to_bytes(8, "little", signed=True)
    else:
        s = v.encode()
        n = len(s)
        if n < 64:
            enc = bytes([n]) + s
        elif n < 16384:
            enc = bytes([0x40 | n >> 8, n & 0xff]) + s
        else:
            enc = b"\x80" + n.to_bytes(4, "big") + s
    return pl + enc


def ziplist(vals):
    """A ziplist (the compact encoding of Redis <= 6.2) of str/int values."""
    body, prev, last = b"", 0, 10
    for v in vals:
        e = _zl_entry(prev, v)
        last = 10 + len(body)
        body += e
        prev = len(e)
    total = 10 + len(body) + 1
    return (total.to_bytes(4, "little") + last.to_bytes(4, "little") + len(vals).to_bytes(2, "little") +
            body + b"\xff")


def old_rdb():
    """An RDB version 9 as Redis 6.x wrote it, with the encodings Redis 7.0
    no longer writes: ziplist lists/hashes/zsets, quicklist of ziplists,
    zsets with string scores, integer-encoded strings, an expiry in seconds."""
    out = b"REDIS0009" + b"\xfa" + _rstr("redis-ver") + _rstr("6.2.6") + b"\xfe\x00\xfb\x09\x01"
    out += b"\x0a" + _rstr("zl:list") + _rstr(ziplist(["a", 5, -300, 70000, 2 ** 40, -2 ** 20, "x" * 100, 12, 0]))
    out += b"\x0d" + _rstr("zl:hash") + _rstr(ziplist(["f1", "v1", "f2", 7, "f3", "y" * 70]))
    out += b"\x0c" + _rstr("zl:zset") + _rstr(ziplist(["m3", "-0.25", "m1", "1.5", "m2", 3]))  # sorted, as Redis keeps them
    out += b"\x0e" + _rstr("ql:list") + b"\x02" + _rstr(ziplist(["n1", 1])) + _rstr(ziplist(["n2", 99999]))
    out += b"\x03" + _rstr("old:zset") + b"\x03" + _rstr("a") + b"\x032.5" + _rstr("b") + b"\xfe" + _rstr("c") + b"\xff"
    out += b"\x00" + _rstr("int8") + b"\xc0\x85"
    out += b"\x00" + _rstr("int16") + b"\xc1\x39\x30"
    out += b"\x00" + _rstr("int32") + b"\xc2" + (-123456789).to_bytes(4, "little", signed=True)
    out += b"\xfd" + (2 ** 31 - 5).to_bytes(4, "little") + b"\x00" + _rstr("ttl:sec") + _rstr("t")
    out += b"\xff"
    return out + crc64(out).to_bytes(8, "little")
