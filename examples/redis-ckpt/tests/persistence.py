"""persistence.py - the persistence commands and rules behave as Redis's:
--save rules trigger a checkpoint by themselves; SHUTDOWN saves only when
save points are configured, SHUTDOWN SAVE always and SHUTDOWN NOSAVE never, SIGTERM saves when save points are set; SAVE blocks and LASTSAVE moves; BGSAVE during a
BGSAVE is refused; INFO persistence carries Redis's fields and the ckpt_*
ones; every data type survives a restart; keys that expired while the server
was down are gone after restore (dropped lazily), others keep their TTL."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Server, check, encode, parse  # noqa: E402


def main():
    # --save rule: 1 change in 1 second
    srv = Server(args=["--save", "1 1", "--heap-size", "128mb"])
    c = srv.conn()
    c.call("SET", "a", "1")
    path = os.path.join(srv.dir, "dump.ckpt")
    end = time.time() + 20
    while time.time() < end and not os.path.exists(path):
        time.sleep(0.1)
    check(os.path.exists(path), "--save \"1 1\" did not checkpoint within 20 s")
    info = srv.wait_bgsave()
    check(info["rdb_last_bgsave_status"] == "ok" and int(info["rdb_saves"]) >= 1, "save rule: %r" % info)
    check(info["rdb_changes_since_last_save"] == "0", "changes after the save: %s" % info["rdb_changes_since_last_save"])
    print("ok: --save rule triggered a checkpoint")
    check(c.call("CONFIG", "SET", "save", "") == b"+OK\r\n", "CONFIG SET save")

    # every type, TTLs, then SAVE
    cmds = [["SET", "str", "v"], ["RPUSH", "list", "a", "b", "c"], ["HSET", "hash", "f", "v", "g", "w"],
            ["SADD", "set", "x", "y"], ["ZADD", "zset", "1.5", "m", "2", "n"], ["SET", "ttl-long", "v", "EX", "1000"],
            ["SET", "ttl-short", "v", "PX", "1500"], ["INCRBY", "counter", "41"], ["INCR", "counter"]]
    for cmd in cmds:
        r = c.call(*cmd)
        check(not r.startswith(b"-"), "%r: %r" % (cmd, r))
    before = parse(c.call("LASTSAVE"))
    time.sleep(1.1)
    c.send_raw(encode("BGSAVE") + encode("BGSAVE"))
    r1, r2 = c.read_reply(), c.read_reply()
    check(r1 == b"+Background saving started\r\n", "BGSAVE: %r" % r1)
    check(r2 == b"-ERR Background save already in progress\r\n", "second BGSAVE: %r" % r2)
    srv.wait_bgsave()
    check(c.call("SAVE") == b"+OK\r\n", "SAVE")
    after = parse(c.call("LASTSAVE"))
    check(after > before, "LASTSAVE did not move: %d -> %d" % (before, after))
    info = srv.info()
    for field in ("rdb_changes_since_last_save", "rdb_bgsave_in_progress", "rdb_last_save_time",
                  "rdb_last_bgsave_status", "rdb_last_bgsave_time_sec", "latest_fork_usec", "ckpt_pause_us",
                  "ckpt_traps", "ckpt_pool_peak_bytes", "ckpt_bytes_written", "ckpt_incremental"):
        check(field in info, "INFO persistence lacks %s" % field)
    check(int(info["ckpt_bytes_written"]) > 0 and int(info["latest_fork_usec"]) > 0, "INFO figures: %r" % info)
    print("ok: SAVE, BGSAVE twice, LASTSAVE, INFO persistence fields")

    # SHUTDOWN NOSAVE loses a later write; SHUTDOWN saves it
    c.call("SET", "lost", "1")
    srv.stop(nosave=True)
    time.sleep(1.6)  # ttl-short expires while the server is down
    srv2 = Server(args=["--save", ""], dir=srv.dir)
    c = srv2.conn()
    check(parse(c.call("EXISTS", "lost")) == 0, "SHUTDOWN NOSAVE saved anyway")
    # 9 keys in the image; the expired one may already be gone (periodic expiry)
    check(parse(c.call("DBSIZE")) in (8, 9), "DBSIZE after restore")
    check(parse(c.call("EXISTS", "ttl-short")) == 0, "a key expired while down is still there")
    ttl = parse(c.call("TTL", "ttl-long"))
    check(990 <= ttl <= 1000, "TTL after restore %r" % ttl)
    check(parse(c.call("GET", "str")) == b"v", "string")
    check(parse(c.call("LRANGE", "list", "0", "-1")) == [b"a", b"b", b"c"], "list")
    check(sorted(parse(c.call("HGETALL", "hash"))) == sorted([b"f", b"v", b"g", b"w"]), "hash")
    check(sorted(parse(c.call("SMEMBERS", "set"))) == [b"x", b"y"], "set")
    check(parse(c.call("ZRANGE", "zset", "0", "-1", "WITHSCORES")) == [b"m", b"1.5", b"n", b"2"], "zset")
    check(parse(c.call("GET", "counter")) == b"42", "counter")
    # the restored heap takes writes and checkpoints again; as in Redis,
    # SHUTDOWN without an argument saves only when save points are set
    check(c.call("SET", "no-save-points", "1") == b"+OK\r\n", "SET after restore")
    c.send_raw(b"SHUTDOWN\r\n")
    srv2.proc.wait(timeout=60)
    srv3 = Server(args=["--save", "3600 1"], dir=srv.dir)
    c = srv3.conn()
    check(parse(c.call("EXISTS", "no-save-points")) == 0, "SHUTDOWN saved with --save \"\"")
    c.call("EXISTS", "ttl-short")  # expired in the image: dropped now, so the counts below are exact
    check(c.call("SET", "kept", "1") == b"+OK\r\n", "SET")
    c.send_raw(b"SHUTDOWN\r\n")
    srv3.proc.wait(timeout=60)
    srv3 = Server(args=["--save", ""], dir=srv.dir)
    c = srv3.conn()
    check(parse(c.call("GET", "kept")) == b"1", "SHUTDOWN with save points did not save")
    check(c.call("SET", "forced", "1") == b"+OK\r\n", "SET")
    c.send_raw(b"SHUTDOWN SAVE\r\n")
    srv3.proc.wait(timeout=60)
    srv3 = Server(args=["--save", ""], dir=srv.dir)
    c = srv3.conn()
    check(parse(c.call("GET", "forced")) == b"1", "SHUTDOWN SAVE with --save \"\" did not save")
    info = srv3.info()
    check(info["ckpt_restored_keys"] == "10", "ckpt_restored_keys %s" % info["ckpt_restored_keys"])
    srv3.stop()
    print("ok: SHUTDOWN saves only with save points (as Redis), SHUTDOWN SAVE always, NOSAVE never; "
          "all types, TTLs and lazy expiry across restarts")

    # SIGTERM with save points configured: a final checkpoint, as Redis
    srv4 = Server(args=["--save", "3600 1"], dir=srv.dir)
    c = srv4.conn()
    check(c.call("SET", "by-sigterm", "1") == b"+OK\r\n", "SET")
    c.close()
    srv4.proc.terminate()
    check(srv4.proc.wait(timeout=60) == 0, "exit status after SIGTERM")
    srv5 = Server(args=["--save", ""], dir=srv.dir)
    c = srv5.conn()
    check(parse(c.call("GET", "by-sigterm")) == b"1", "SIGTERM did not save")
    srv5.stop()
    print("ok: SIGTERM saves when save points are configured")
    print("PASS persistence")


if __name__ == "__main__":
    main()
