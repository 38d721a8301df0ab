"""protocol.py - redis-ckpt's replies are byte-for-byte those of a real
redis-server 7.0 for every supported command (run side by side on the same
command script), pipelining and inline commands work, malformed RESP gets
Redis's protocol error and only that client is closed, and the limits
(maxclients, a full heap, requirepass, bad options) behave as specified."""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Conn, Server, check, encode, fail, parse, tmpdir  # noqa: E402

# Each entry: a command, or ("sort", command) when the element order of the
# reply is unspecified (hash/set iteration order differs between servers), or
# ("approx", command) for a PTTL.
SCRIPT = [
    # strings
    ["SET", "s1", "hello"], ["GET", "s1"], ["GET", "nokey"], ["SET", "s1", "v2", "XX"],
    ["SET", "s1", "v3", "NX"], ["SET", "s2", "v", "NX"], ["SET", "s2", "x", "XX", "GET"],
    ["SET", "s9", "x", "GET"], ["SET", "s1", "a", "EX", "100"], ["TTL", "s1"], ["SET", "s1", "b", "KEEPTTL"],
    ["TTL", "s1"], ["SET", "s1", "c"], ["TTL", "s1"], ["SET", "s1", "c", "PX", "100000"], ("approx", ["PTTL", "s1"]),
    ["SET", "s1", "v", "EX", "0"], ["SET", "s1", "v", "EX", "-5"], ["SET", "s1", "v", "EX", "abc"],
    ["SET", "s1", "v", "NX", "XX"], ["SET", "s1", "v", "BADOPT"], ["SET", "s1"], ["SET", "s1", "v", "EX", "10", "PX", "5"],
    ["SETNX", "s1", "z"], ["SETNX", "s3", "z"], ["GETSET", "s3", "y"], ["GETSET", "s4", "y"],
    ["MSET", "m1", "1", "m2", "2", "m3", "3"], ["MSET", "m1", "1", "m2"], ["MGET", "m1", "m2", "nokey", "m3"],
    ["INCR", "cnt"], ["INCR", "cnt"], ["INCRBY", "cnt", "10"], ["DECR", "cnt"], ["DECRBY", "cnt", "5"],
    ["INCRBY", "cnt", "abc"], ["INCR", "s1"], ["SET", "big", "9223372036854775807"], ["INCR", "big"],
    ["SET", "neg", "-9223372036854775808"], ["DECR", "neg"], ["SET", "sp", " 1"], ["INCR", "sp"],
    ["SET", "lz", "01"], ["INCR", "lz"], ["APPEND", "ap", "abc"], ["APPEND", "ap", "def"], ["GET", "ap"],
    ["STRLEN", "ap"], ["STRLEN", "nokey"], ["SET", "bin", "a\x00b\r\nc"], ["GET", "bin"], ["STRLEN", "bin"],
    ["GET"], ["GET", "a", "b"],
    # keys
    ["EXISTS", "s1", "s1", "nokey", "m1"], ["DEL", "m1", "m1", "nokey", "m2"], ["EXISTS", "m1"],
    ["EXPIRE", "m3", "100"], ["TTL", "m3"], ["PTTL", "nokey"], ["TTL", "nokey"], ["TTL", "s3"],
    ["EXPIRE", "m3", "200", "NX"], ["EXPIRE", "m3", "200", "XX"], ["EXPIRE", "m3", "50", "GT"], ["EXPIRE", "m3", "50", "LT"],
    ["TTL", "m3"], ["EXPIRE", "m3", "5", "NX", "XX"], ["EXPIRE", "m3", "5", "GT", "LT"], ["EXPIRE", "m3", "5", "FOO"],
    ["EXPIRE", "m3", "x"], ["EXPIRE", "nokey", "100"], ["PERSIST", "m3"], ["PERSIST", "m3"], ["TTL", "m3"],
    ["PEXPIRE", "m3", "100000"], ("approx", ["PTTL", "m3"]), ["EXPIRE", "m3", "-1"], ["EXISTS", "m3"],
    ["TYPE", "s1"], ["TYPE", "nokey"], ["RENAME", "s3", "s5"], ["GET", "s5"], ["GET", "s3"], ["RENAME", "nokey", "x"],
    ["RENAME", "s5", "s5"], ["SET", "r1", "a"], ["EXPIRE", "r1", "100"], ["RENAME", "r1", "s4"], ["TTL", "s4"],
    ["GET", "s4"], ["SELECT", "0"], ["SELECT", "99"], ["SELECT", "x"],
    # lists
    ["LPUSH", "l", "a", "b", "c"], ["RPUSH", "l", "d", "e"], ["LLEN", "l"], ["LRANGE", "l", "0", "-1"],
    ["LRANGE", "l", "1", "2"], ["LRANGE", "l", "-2", "100"], ["LRANGE", "l", "5", "1"], ["LRANGE", "l", "x", "1"],
    ["LINDEX", "l", "0"], ["LINDEX", "l", "-1"], ["LINDEX", "l", "10"], ["LINDEX", "l", "y"],
    ["LPOP", "l"], ["RPOP", "l"], ["LPOP", "l", "2"], ["LPOP", "l", "0"], ["LPOP", "l", "-1"], ["RPOP", "l", "10"],
    ["EXISTS", "l"], ["LPOP", "l"], ["LPOP", "l", "2"], ["LLEN", "l"], ["LPUSH", "s1", "x"], ["LRANGE", "s1", "0", "1"],
    ["TYPE", "l"], ["RPUSH", "l2", "x"], ["TYPE", "l2"], ["LPOP", "l2", "1", "2"],
    # hashes
    ["HSET", "h", "f1", "v1", "f2", "v2"], ["HSET", "h", "f1", "v9", "f3", "v3"], ["HSET", "h", "f1"],
    ["HGET", "h", "f1"], ["HGET", "h", "nof"], ["HGET", "noh", "f"], ["HMGET", "h", "f1", "nof", "f3"],
    ["HLEN", "h"], ("sort", ["HGETALL", "h"]), ["HGETALL", "noh"], ["HDEL", "h", "f1", "nof"], ["HLEN", "h"],
    ["HINCRBY", "h", "n", "5"], ["HINCRBY", "h", "n", "-7"], ["HINCRBY", "h", "f2", "1"], ["HINCRBY", "h", "n", "x"],
    ["HSET", "h", "max", "9223372036854775807"], ["HINCRBY", "h", "max", "1"], ["HGET", "s1", "f"], ["HMSET", "h", "a", "1"],
    ["HDEL", "h", "f2", "f3", "n", "max", "a"], ["EXISTS", "h"],
    # sets
    ["SADD", "st", "a", "b", "c", "a"], ["SADD", "st", "a", "d"], ["SCARD", "st"], ("sort", ["SMEMBERS", "st"]),
    ["SISMEMBER", "st", "a"], ["SISMEMBER", "st", "z"], ["SREM", "st", "a", "z"], ["SCARD", "st"],
    ["SMEMBERS", "nost"], ["SCARD", "nost"], ["SPOP", "nost"], ["SPOP", "nost", "2"], ["SPOP", "st", "-1"],
    ["SADD", "one", "x"], ["SPOP", "one"], ["EXISTS", "one"], ["SADD", "s1", "x"], ["SPOP", "st", "0"],
    ["SADD", "two", "x", "y"], ("sort", ["SPOP", "two", "5"]), ["EXISTS", "two"],
    # sorted sets
    ["ZADD", "z", "1", "a", "2", "b", "3", "c"], ["ZADD", "z", "1.1", "d"], ["ZSCORE", "z", "d"], ["ZSCORE", "z", "a"],
    ["ZADD", "z", "inf", "e", "-inf", "f"], ["ZRANGE", "z", "0", "-1", "WITHSCORES"], ["ZRANGE", "z", "0", "-1"],
    ["ZRANGE", "z", "1", "2"], ["ZRANGE", "z", "-2", "-1", "WITHSCORES"], ["ZRANGE", "z", "5", "1"],
    ["ZRANGE", "z", "0", "1", "REV"], ["ZCARD", "z"], ["ZRANK", "z", "a"], ["ZRANK", "z", "e"], ["ZRANK", "z", "zz"],
    ["ZADD", "z", "NX", "5", "a"], ["ZADD", "z", "XX", "5", "a"], ["ZSCORE", "z", "a"], ["ZADD", "z", "CH", "6", "a", "7", "new"],
    ["ZADD", "z", "INCR", "2.5", "a"], ["ZADD", "z", "INCR", "1", "a", "2", "b"], ["ZADD", "z", "NX", "XX", "1", "a"],
    ["ZADD", "z", "GT", "1", "a"], ["ZADD", "z", "GT", "CH", "100", "a"], ["ZADD", "z", "LT", "CH", "100", "b"],
    ["ZADD", "z", "GT", "NX", "1", "a"], ["ZADD", "z", "1", "a", "2"], ["ZADD", "z", "x", "a"], ["ZADD", "z", "nan", "a"],
    ["ZADD", "z", "INCR", "inf", "e"], ["ZADD", "z", "INCR", "-inf", "e"], ["ZADD", "z", "XX", "INCR", "1", "nomember"],
    ["ZADD", "nz", "XX", "1", "a"], ["EXISTS", "nz"],
    ["ZSCORE", "z", "nomember"], ["ZSCORE", "noz", "a"], ["ZREM", "z", "a", "nomember"], ["ZCARD", "z"],
    ["ZPOPMIN", "z"], ["ZPOPMIN", "z", "2"], ["ZPOPMIN", "z", "-1"], ["ZPOPMIN", "noz"], ["ZPOPMIN", "noz", "3"],
    ["ZPOPMIN", "z", "100"], ["EXISTS", "z"], ["ZADD", "s1", "1", "a"], ["ZRANGE", "z", "a", "b"],
    ["ZADD", "zt", "1", "b", "1", "a", "1", "c", "0", "z"], ["ZRANGE", "zt", "0", "-1", "WITHSCORES"], ["ZRANK", "zt", "c"],
    ["ZADD", "zs", "1", "a", "2", "b", "2.5", "c", "3", "d", "-1", "m", "inf", "i"],
    ["ZRANGE", "zs", "1", "3", "BYSCORE"], ["ZRANGE", "zs", "(1", "3", "BYSCORE", "WITHSCORES"],
    ["ZRANGE", "zs", "-inf", "+inf", "BYSCORE"], ["ZRANGE", "zs", "(2", "(3", "BYSCORE"],
    ["ZRANGE", "zs", "3", "1", "BYSCORE", "REV"], ["ZRANGE", "zs", "+inf", "-inf", "BYSCORE", "REV", "WITHSCORES"],
    ["ZRANGE", "zs", "-inf", "+inf", "BYSCORE", "LIMIT", "1", "2"], ["ZRANGE", "zs", "-inf", "+inf", "BYSCORE", "LIMIT", "2", "-1"],
    ["ZRANGE", "zs", "+inf", "-inf", "BYSCORE", "REV", "LIMIT", "1", "3"], ["ZRANGE", "zs", "0", "-1", "LIMIT", "1", "2"],
    ["ZRANGE", "zs", "x", "3", "BYSCORE"], ["ZRANGE", "zs", "5", "9", "BYSCORE"], ["ZRANGE", "zs", "3", "1", "BYSCORE"],
    ["ZRANGE", "zs", "-inf", "+inf", "BYSCORE", "LIMIT", "-1", "2"], ["ZRANGE", "nozs", "0", "1", "BYSCORE"],
    ["ZRANGEBYSCORE", "zs", "1", "3"], ["ZRANGEBYSCORE", "zs", "(1", "+inf", "WITHSCORES", "LIMIT", "0", "2"],
    # server
    ["PING"], ["PING", "hello"], ["PING", "a", "b"], ["ECHO", "hi"], ["ECHO"],
    ["CONFIG", "GET", "appendonly"], ["CONFIG", "SET", "appendonly", "no"], ["CONFIG", "SET", "save", ""],
    ["CONFIG", "GET", "save"], ["CONFIG", "SET", "save", "100 10"], ["CONFIG", "GET", "save"],
    ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", "myname"], ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", "bad name"],
    ["NOSUCHCOMMAND", "a", "b"], ["nosuchcommand"], ["get", "s4"], ["GeT", "s4"], ["AUTH", "x"],
    ["COMMAND", "INFO", "nosuch"],
    # transactions
    ["MULTI"], ["SET", "tx", "1"], ["INCR", "tx"], ["GET", "tx"], ["EXEC"], ["GET", "tx"],
    ["MULTI"], ["MULTI"], ["SET", "tx", "9"], ["EXEC"], ["GET", "tx"],
    ["MULTI"], ["SET", "tx"], ["NOSUCH"], ["SET", "tx", "3"], ["EXEC"], ["GET", "tx"],
    ["EXEC"], ["DISCARD"], ["MULTI"], ["SET", "tx", "2"], ["DISCARD"], ["GET", "tx"],
    ["MULTI"], ["LPUSH", "s1", "x"], ["SET", "tx", "5"], ["EXEC"], ["GET", "tx"], ["MULTI"], ["EXEC"],
    # keyspace-wide
    ("sort", ["KEYS", "s*"]), ("sort", ["KEYS", "?[0-9]"]), ["KEYS", "nomatch*"], ["DBSIZE"], ["FLUSHDB"], ["DBSIZE"],
    ["RANDOMKEY"], ["SET", "only", "1"], ["RANDOMKEY"], ["FLUSHALL"], ["KEYS", "*"],
]


def sort_reply(raw):
    v = parse(raw)
    if isinstance(v, list):
        return sorted(v, key=repr)
    return v


def compare_script(ck, rs):
    a, b = Conn(ck.port), Conn(rs.port)
    bad = 0
    for item in SCRIPT:
        kind = item[0] if isinstance(item, tuple) else "exact"
        cmd = item[1] if isinstance(item, tuple) else item
        ra, rb = a.call(*cmd), b.call(*cmd)
        if kind == "sort":
            same = sort_reply(ra) == sort_reply(rb)
        elif kind == "approx":  # a PTTL: the two servers ran it a few ms apart
            same = ra[:1] == rb[:1] == b":" and abs(parse(ra) - parse(rb)) < 1000
        else:
            same = ra == rb
        if not same:
            bad += 1
            print("MISMATCH %r\n  redis-ckpt:   %r\n  redis-server: %r" % (cmd, ra, rb))
    a.close()
    b.close()
    check(bad == 0, "%d of %d commands differ from redis-server" % (bad, len(SCRIPT)))
    print("ok: %d commands reply exactly as redis-server 7.0" % len(SCRIPT))


def test_pipelining(ck):
    c = Conn(ck.port)
    n = 5000
    c.send_raw(b"".join(encode("SET", "p:%d" % i, "v%d" % i) for i in range(n)) +
               b"".join(encode("GET", "p:%d" % i) for i in range(n)))
    for i in range(n):
        check(c.read_reply() == b"+OK\r\n", "pipelined SET %d" % i)
    for i in range(n):
        want = b"v%d" % i
        r = c.read_reply()
        check(r == b"$%d\r\n%s\r\n" % (len(want), want), "pipelined GET %d: %r" % (i, r))
    # a command split across many tiny writes
    msg = encode("SET", "split", "x" * 1000)
    for i in range(0, len(msg), 7):
        c.send_raw(msg[i:i + 7])
        time.sleep(0.0005 if i < 100 else 0)
    check(c.read_reply() == b"+OK\r\n", "split SET")
    # a big bulk argument (4 MiB) in one command
    big = os.urandom(4 << 20)
    check(c.call("SET", "bigval", big) == b"+OK\r\n", "4 MiB SET")
    check(c.call("GET", "bigval") == b"$%d\r\n%s\r\n" % (len(big), big), "4 MiB GET")
    c.close()
    print("ok: pipelining (%d+%d commands in one write), split writes, 4 MiB argument" % (n, n))


def read_until_pong(c):
    out = b""
    try:
        while not out.endswith(b"+PONG\r\n"):
            out += c.read_reply()
    except (EOFError, ConnectionResetError):
        out += b"<closed>"
    return out


def test_inline(ck, rs):
    cases = [b"PING\r\n", b"SET inl hello\r\n", b"GET inl\r\n", b"SET q \"a b\\x41\\n\"\r\n", b"GET q\r\n",
             b"SET sq 'it\\'s'\r\n", b"GET sq\r\n", b"   \r\n", b"ECHO \"\"\r\n",
             b"PING\nPING\n", b"DEL inl q sq\r\n", b"SET sq 'it''s'\r\n"]
    for data in cases:
        a, b = Conn(ck.port), Conn(rs.port)
        # the last case is a protocol error: no PING after it (the server
        # closes with the PING unread, and the RST could eat the reply)
        tail = b"" if data == cases[-1] else b"PING\r\n"
        a.send_raw(data + tail)
        b.send_raw(data + tail)
        ra, rb = read_until_pong(a), read_until_pong(b)
        check(ra == rb, "inline %r: redis-ckpt %r, redis-server %r" % (data, ra, rb))
        a.close()
        b.close()
    print("ok: %d inline command cases match redis-server" % len(cases))


BAD_INPUTS = [
    b"*abc\r\n", b"*1\r\n+foo\r\n", b"*1\r\n$-5\r\n", b"*1\r\n$536870913\r\n", b"*1\r\n$abc\r\n",
    b"*3000000000\r\n", b"SET a \"unbalanced\r\n", b"SET a 'x'y\r\n", b"*1\r\n" + b"1" * 70000,
    b"X" * 70000,
]


def test_bad_input(ck, rs):
    for data in BAD_INPUTS:
        replies = []
        for srv in (ck, rs):
            c = Conn(srv.port)
            c.send_raw(data)
            r = c.read_reply()
            closed = c.closed_by_peer()
            replies.append((r, closed))
            c.close()
        (ra, ca), (rb, cb) = replies
        check(ra.startswith(b"-ERR Protocol error: "), "bad input %r: reply %r" % (data[:40], ra))
        check(ra == rb, "bad input %r: redis-ckpt %r, redis-server %r" % (data[:40], ra, rb))
        check(ca, "bad input %r: redis-ckpt did not close the client" % data[:40])
        check(ck.alive(), "server died on bad input %r" % data[:40])
        c = Conn(ck.port)
        check(c.call("PING") == b"+PONG\r\n", "server does not answer after bad input %r" % data[:40])
        c.close()
    # a protocol error in the middle of a pipeline: earlier commands answered
    c = Conn(ck.port)
    c.send_raw(encode("SET", "pe", "1") + b"*1\r\n$x\r\n" + encode("GET", "pe"))
    check(c.read_reply() == b"+OK\r\n", "command before the protocol error")
    check(c.read_reply().startswith(b"-ERR Protocol error: invalid bulk length"), "protocol error reply")
    check(c.closed_by_peer(), "client closed after the protocol error")
    c.close()
    print("ok: %d malformed inputs: Redis's protocol error, that client closed, server goes on" % len(BAD_INPUTS))


def test_scan_and_expiry(ck):
    """SCAN visits every key (cursor kept across a growing table: incremental
    rehash), MATCH/TYPE filter; KEYS and RANDOMKEY agree; keys with a TTL
    disappear without being touched (periodic expiry)."""
    c = Conn(ck.port)
    c.call("FLUSHALL")
    n = 3000
    c.send_raw(b"".join(encode("SET", "sc:%d" % i, "v") for i in range(n)) + encode("RPUSH", "sc:list", "x"))
    for _ in range(n + 1):
        c.read_reply()
    seen, cursor, rounds = set(), b"0", 0
    while True:
        cursor, keys = parse(c.call("SCAN", cursor, "COUNT", "7"))
        seen.update(keys)
        rounds += 1
        if rounds == 5:  # grow the table in the middle of the scan
            c.send_raw(b"".join(encode("SET", "grow:%d" % i, "v") for i in range(5000)))
            for _ in range(5000):
                c.read_reply()
        if cursor == b"0":
            break
    want = {b"sc:%d" % i for i in range(n)} | {b"sc:list"}
    check(want <= seen, "SCAN missed %d keys present all along" % len(want - seen))
    _, lists = parse(c.call("SCAN", "0", "COUNT", "100000", "TYPE", "list"))
    check(lists == [b"sc:list"], "SCAN TYPE list: %r" % lists[:5])
    _, m = parse(c.call("SCAN", "0", "MATCH", "sc:1?", "COUNT", "100000"))
    check(sorted(m) == sorted(b"sc:1%d" % i for i in range(10)), "SCAN MATCH: %r" % m)
    check(len(parse(c.call("KEYS", "*"))) == n + 1 + 5000, "KEYS *")
    check(parse(c.call("EXISTS", parse(c.call("RANDOMKEY")))) == 1, "RANDOMKEY gives an existing key")
    c.call("FLUSHALL")
    c.send_raw(b"".join(encode("SET", "ttl:%d" % i, "v", "PX", "100") for i in range(500)))
    for _ in range(500):
        c.read_reply()
    c.call("SET", "stays", "v")
    # the expires set follows SET/EXPIRE/PERSIST/RENAME/DEL exactly
    for i in range(10):
        c.call("SET", "e:%d" % i, "v", "EX", "1000")
    c.call("PERSIST", "e:0")
    c.call("SET", "e:1", "w")               # SET drops the TTL
    c.call("SET", "e:2", "w", "KEEPTTL")    # ...unless KEEPTTL
    c.call("RENAME", "e:3", "r:3")          # moves with the key
    c.call("RENAME", "e:4", "e:5")          # overwrites a key with a TTL
    c.call("RENAME", "stays", "e:6")        # a key without TTL over one with
    c.call("DEL", "e:7")
    c.call("EXPIRE", "e:8", "-1")           # deletes
    c.call("SET", "stays", "v")
    check(parse(c.call("TTL", "e:5")) > 900 and parse(c.call("TTL", "r:3")) > 900, "TTL moved by RENAME")
    check(parse(c.call("TTL", "e:6")) == -1, "RENAME of a key without TTL")
    ks = parse(c.call("INFO", "keyspace")).decode()
    check(",expires=504," in ks, "expires count after SET/EXPIRE/PERSIST/RENAME/DEL: %r" % ks)
    for k in ("e:0", "e:1", "e:2", "r:3", "e:5", "e:6", "e:9"):
        c.call("DEL", k)
    end = time.time() + 10
    while time.time() < end and parse(c.call("DBSIZE")) > 1:
        time.sleep(0.1)
    check(parse(c.call("DBSIZE")) == 1, "500 expired keys not removed by the periodic cycle")
    c.call("FLUSHALL")
    c.close()
    print("ok: SCAN across a rehash, MATCH/TYPE, KEYS, RANDOMKEY; periodic expiry of 500 untouched keys")


def test_maxclients():
    srv = Server(args=["--save", "", "--maxclients", "3", "--heap-size", "64mb"])
    time.sleep(0.3)  # let the server see the readiness probe's connection go
    conns = [Conn(srv.port) for _ in range(3)]
    for c in conns:
        check(c.call("PING") == b"+PONG\r\n", "client within maxclients")
    extra = Conn(srv.port)
    r = extra.read_reply()
    check(r == b"-ERR max number of clients reached\r\n", "4th client: %r" % r)
    check(extra.closed_by_peer(), "4th client closed")
    conns[0].close()
    time.sleep(0.2)
    c = Conn(srv.port)
    check(c.call("PING") == b"+PONG\r\n", "a client after one left")
    for x in conns[1:] + [c]:
        x.close()  # or stop()'s SHUTDOWN connection would be refused
    time.sleep(0.2)
    srv.stop()
    print("ok: maxclients")


def test_oom():
    srv = Server(args=["--save", "", "--heap-size", "16mb"])
    c = srv.conn()
    val = b"v" * 100000
    ok = 0
    r = b""
    for i in range(1000):
        r = c.call("SET", "k%d" % i, val)
        if r != b"+OK\r\n":
            break
        ok += 1
    want = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    check(r == want, "SET into a full heap: %r" % r)
    check(ok > 10, "only %d values fit into a 16 MiB heap" % ok)
    # every other kind of write also gets the OOM reply, nothing crashes
    for cmd in (["RPUSH", "l", val], ["HSET", "h", "f", val], ["SADD", "s", val], ["ZADD", "z", "1", val],
                ["APPEND", "k0", val], ["MSET", "a", val, "b", val]):
        for _ in range(200):
            r = c.call(*cmd)
            if r.startswith(b"-"):
                break
        check(r == want, "%s into a full heap: %r" % (cmd[0], r[:80]))
    check(c.call("GET", "k0")[:10] == b"$100000\r\nv"[:10] or c.call("STRLEN", "k0").startswith(b":"), "old data readable")
    check(c.call("DEL", *["k%d" % i for i in range(ok)]) == b":%d\r\n" % ok, "DEL frees")
    check(c.call("SET", "again", val) == b"+OK\r\n", "SET works again after DEL")
    check(c.call("PING") == b"+PONG\r\n", "alive")
    srv.stop()
    print("ok: OOM reply on a full heap (%d x 100 kB fit in 16 MiB), recovery after DEL" % ok)


def test_auth():
    srv = Server(args=["--save", "", "--requirepass", "sekret", "--heap-size", "64mb"])
    c = srv.conn()
    check(c.call("GET", "a") == b"-NOAUTH Authentication required.\r\n", "NOAUTH")
    check(c.call("AUTH", "wrong") == b"-WRONGPASS invalid username-password pair or user is disabled.\r\n", "WRONGPASS")
    check(c.call("AUTH", "sekret") == b"+OK\r\n", "AUTH")
    check(c.call("SET", "a", "1") == b"+OK\r\n", "after AUTH")
    srv.stop()
    print("ok: requirepass")


def test_bad_options():
    from rclib import BINARY
    for args, what in ((["--nosuchoption", "1"], "unknown option"), (["--port", "x"], "invalid --port"),
                       (["--snapshot-mode", "magic"], "invalid --snapshot-mode"),
                       (["--heap-size", "lots"], "invalid --heap-size")):
        p = subprocess.run([BINARY] + args, capture_output=True, text=True, timeout=30)
        check(p.returncode == 1, "%s: exit %d" % (args, p.returncode))
        check(what in p.stderr, "%s: stderr %r" % (args, p.stderr))
    print("ok: bad options exit 1 with a message")


def run_on_pty(argv, lines, timeout=20):
    """Runs argv on a pseudo-terminal, types lines, returns all output."""
    import pty
    import select
    master, slave = pty.openpty()
    # TERM=dumb: linenoise reads plain lines (no cursor-position queries)
    env = dict(os.environ, TERM="dumb")
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, close_fds=True, env=env)
    os.close(slave)
    out = b""
    end = time.time() + timeout
    pending = list(lines)
    last_write = 0.0
    while time.time() < end:
        r, _, _ = select.select([master], [], [], 0.1)
        if r:
            try:
                d = os.read(master, 65536)
            except OSError:
                break
            if not d:
                break
            out += d
        elif pending and time.time() - last_write > 0.3:
            os.write(master, pending.pop(0).encode() + b"\r")
            last_write = time.time()
        if p.poll() is not None and not r:
            break
    if p.poll() is None:
        p.kill()
    p.wait()
    os.close(master)
    return out.decode(errors="replace")


def test_redis_cli(ck):
    # redis-cli on a terminal sends COMMAND DOCS at start-up (for its hints);
    # the session must show no error.
    out = run_on_pty(["redis-cli", "-p", str(ck.port)], ["SET clikey clival", "GET clikey", "QUIT"])
    check("clival" in out and "OK" in out, "redis-cli interactive output: %r" % out)
    check("ERR" not in out and "rror" not in out, "redis-cli printed an error: %r" % out)
    p = subprocess.run(["redis-cli", "-p", str(ck.port), "INFO", "persistence"], capture_output=True, text=True, timeout=30)
    check("rdb_bgsave_in_progress:0" in p.stdout and "ckpt_traps:" in p.stdout, "INFO persistence: %r" % p.stdout)
    print("ok: redis-cli interactive session and INFO")


def main():
    ck = Server(args=["--save", "", "--heap-size", "256mb"])
    rs = Server(kind="redis")
    compare_script(ck, rs)
    test_inline(ck, rs)
    test_bad_input(ck, rs)
    test_pipelining(ck)
    test_scan_and_expiry(ck)
    test_redis_cli(ck)
    rs.stop()
    ck.stop()
    test_maxclients()
    test_oom()
    test_auth()
    test_bad_options()
    print("PASS protocol")


if __name__ == "__main__":
    main()
