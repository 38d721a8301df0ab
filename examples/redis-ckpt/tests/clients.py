"""clients.py - redis-py's everyday calls give the same results against
redis-ckpt as against a real redis-server 7.0 (the same call sequence on
both, results compared), including a pipelined transaction, optimistic
locking with WATCH (a conflicting write makes it retry), BLPOP with a
timeout, the scan_iter helpers and INFO parsing."""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Server, check  # noqa: E402

try:
    import redis
except ImportError:
    print("FAIL: redis-py (Debian's python3-redis) is not importable by %s" % sys.executable)
    sys.exit(1)


def everyday(r):
    """Returns the results of the calls, order-free ones sorted."""
    out = []
    a = out.append
    r.flushall()
    a(r.set("s", "v", ex=100)); a(r.get("s")); a(r.ttl("s")); a(r.setex("sx", 50, "x")); a(r.psetex("px", 50000, "p"))
    a(r.getdel("sx")); a(r.getex("s", persist=True)); a(r.ttl("s")); a(r.incrbyfloat("f", 1.25)); a(r.incrbyfloat("f", -0.5))
    a(r.setrange("s", 1, "XY")); a(r.getrange("s", 0, -1)); a(r.msetnx({"m1": "1", "m2": "2"})); a(r.mget("m1", "m2", "no"))
    a(r.incr("n")); a(r.incrby("n", 5)); a(r.decr("n")); a(r.append("s", "!")); a(r.strlen("s")); a(r.exists("s", "no"))
    a(r.renamenx("m1", "m3")); a(r.copy("m3", "m4")); a(r.type("m4")); a(r.expireat("m4", 4102444800)); a(r.expiretime("m4"))
    a(r.persist("m4")); a(r.delete("m2", "no")); a(r.touch("m3", "m4"))
    a(r.rpush("l", *"abcdefa")); a(r.lpos("l", "a")); a(r.lpos("l", "a", rank=-1)); a(r.lpos("l", "a", count=0))
    a(r.lrem("l", 1, "a")); a(r.lset("l", 0, "B")); a(r.linsert("l", "before", "d", "D")); a(r.ltrim("l", 0, 4))
    a(r.lrange("l", 0, -1)); a(r.lmove("l", "l2", "LEFT", "RIGHT")); a(r.rpoplpush("l", "l2")); a(r.lrange("l2", 0, -1))
    a(r.lindex("l", 1)); a(r.llen("l")); a(r.lpop("l", 2)); a(r.rpop("l"))
    a(r.hset("h", mapping={"a": "1", "b": "2"})); a(r.hsetnx("h", "a", "9")); a(r.hincrby("h", "a", 2))
    a(r.hincrbyfloat("h", "b", 0.5)); a(sorted(r.hkeys("h"))); a(sorted(r.hvals("h"))); a(r.hgetall("h"))
    a(r.hmget("h", "a", "zz")); a(r.hexists("h", "a")); a(r.hlen("h")); a(r.hstrlen("h", "b")); a(r.hdel("h", "a"))
    a(r.hrandfield("h")); a(sorted(r.hscan_iter("h")))  # one field left: no randomness
    a(r.sadd("s1", "a", "b", "c")); a(r.sadd("s2", "b", "c", "d")); a(sorted(r.sinter("s1", "s2")))
    a(sorted(r.sunion("s1", "s2"))); a(sorted(r.sdiff("s1", "s2"))); a(r.sinterstore("s3", ["s1", "s2"]))
    a(r.sunionstore("s4", ["s1", "s2"])); a(r.sdiffstore("s5", ["s1", "s2"])); a(r.smove("s1", "s2", "a"))
    a(r.smismember("s2", ["a", "z"])); a(r.sismember("s2", "a")); a(r.scard("s2")); a(sorted(r.smembers("s2")))
    a(sorted(r.sscan_iter("s4", match="[ab]"))); a(r.srem("s2", "a")); a(r.srandmember("s5"))
    a(r.zadd("z", {"a": 1, "b": 2, "c": 3, "d": 4})); a(r.zincrby("z", 2.5, "a")); a(r.zrevrange("z", 0, -1, withscores=True))
    a(r.zrange("z", 0, 1)); a(r.zrangebyscore("z", 2, "+inf", withscores=True)); a(r.zrevrangebyscore("z", "+inf", 3))
    a(r.zrevrank("z", "a")); a(r.zrank("z", "a")); a(r.zcount("z", "(2", 4)); a(r.zscore("z", "a")); a(r.zmscore("z", ["a", "x"]))
    a(r.zadd("zl", {"a": 0, "b": 0, "c": 0})); a(r.zrangebylex("zl", "[b", "+")); a(r.zlexcount("zl", "-", "(c"))
    a(r.zrange("zl", "[a", "(c", bylex=True)); a(r.zremrangebylex("zl", "[a", "[a")); a(r.zremrangebyscore("z", 0, 2))
    a(r.zremrangebyrank("z", 0, 0)); a(r.zcard("z")); a(r.zpopmax("z")); a(r.zpopmin("zl")); a(sorted(r.zscan_iter("zl")))
    a(r.zrem("zl", "c"))
    a(r.object("encoding", "n")); a(r.exists("m3")); a(r.dbsize()); a(sorted(r.scan_iter(match="m*")))
    a(sorted(r.keys("s*"))); a(r.rename("m3", "m5")); a(r.expire("m5", 100)); a(r.pttl("m5") > 90000); a(r.randomkey() is not None)
    with r.pipeline() as p:
        p.set("t", 1).incr("t").get("t").lpush("tl", "x").lrange("tl", 0, -1)
        a(p.execute())
    with r.pipeline(transaction=False) as p:
        p.get("t").ping().echo("hi")
        a(p.execute())
    a(r.blpop(["bq", "tl"], timeout=1)); a(r.blpop("bq", timeout=1)); a(r.ping()); a(r.echo("e"))
    a(r.client_setname("cli")); a(r.client_getname()); a(r.config_get("appendonly")); a(r.flushdb())
    return out


def watch_retry(r, other):
    """WATCH/MULTI/EXEC through redis-py's transaction(): a write from
    another client between WATCH and EXEC makes the first attempt fail
    (WatchError) and the retry succeed."""
    r.set("counter", 10)
    attempts = []

    def incr(pipe):
        v = int(pipe.get("counter"))
        if not attempts:
            other.set("counter", 100)  # the conflict
        attempts.append(v)
        pipe.multi()
        pipe.set("counter", v + 1)

    r.transaction(incr, "counter")
    return attempts, r.get("counter")


def blocked_pop(r, other):
    """BLPOP waits until another client pushes."""
    def push():
        time.sleep(0.3)
        other.rpush("wq", "job")
    t = threading.Thread(target=push)
    t.start()
    t0 = time.time()
    got = r.blpop("wq", timeout=5)
    t.join()
    return got, 0.2 < time.time() - t0 < 4


def main():
    ck = Server(args=["--save", "", "--heap-size", "128mb"])
    rs = Server(kind="redis")
    results = []
    for srv in (ck, rs):
        r = redis.Redis(port=srv.port, socket_timeout=30)
        other = redis.Redis(port=srv.port, socket_timeout=30)
        results.append((everyday(r), watch_retry(r, other), blocked_pop(r, other)))
        info = r.info()
        check(info["used_memory"] >= 0 and "used_memory_peak" in info and "connected_clients" in info,
              "INFO parsed by redis-py: %r" % sorted(info)[:10])
        r.close()
        other.close()
    (ea, wa, ba), (eb, wb, bb) = results
    check(len(ea) == len(eb), "%d results vs %d" % (len(ea), len(eb)))
    for i, (x, y) in enumerate(zip(ea, eb)):
        check(x == y, "redis-py call %d: redis-ckpt %r, redis-server %r" % (i, x, y))
    check(wa == wb == ([10, 100], b"101"), "WATCH retry: redis-ckpt %r, redis-server %r" % (wa, wb))
    check(ba == bb == ((b"wq", b"job"), True), "BLPOP: redis-ckpt %r, redis-server %r" % (ba, bb))
    rs.stop()
    ck.stop()
    print("ok: %d redis-py calls give redis-server's results; transaction() retries after a conflicting write; "
          "BLPOP woken by another client" % len(ea))
    print("PASS clients")

if __name__ == "__main__":
    main()
