"""crash.py MODE - a crash in the middle of BGSAVE loses nothing that was
saved before: SIGKILL right after BGSAVE's reply (the checkpoint of ~150 MB
is still being written), then restart: the server comes up from the previous
image, consistent (every key and ballast value as at that image, nothing of
the later writes); its next checkpoint cleans the dead temp file.  Then a
damaged image (flipped byte, truncation, not an image at all): the server
refuses to start, names the file and the problem, and leaves the file alone.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import BINARY, Server, check, encode, parse, tmpdir  # noqa: E402

MODE = sys.argv[1] if len(sys.argv) > 1 else "thread"
BALLAST = 150000
K = 2000


def bval(i, gen):
    return (b"%s%07d" % (gen, i)) * 100  # 800 bytes


def load(c, gen):
    for base in range(0, BALLAST, 2000):
        c.send_raw(b"".join(encode("SET", "ballast:%d" % i, bval(i, gen)) for i in range(base, base + 2000)))
        for _ in range(2000):
            check(c.read_reply() == b"+OK\r\n", "SET ballast")
    c.send_raw(b"".join(encode("SET", "key:%d" % j, gen + b"%d" % j) for j in range(K)))
    for _ in range(K):
        check(c.read_reply() == b"+OK\r\n", "SET key")


def check_state_a(srv, what):
    c = srv.conn()
    n = parse(c.call("DBSIZE"))
    check(n == BALLAST + K, "%s: DBSIZE %d, want %d" % (what, n, BALLAST + K))
    vals = parse(c.call("MGET", *["key:%d" % j for j in range(K)]))
    bad = [j for j in range(K) if vals[j] != b"A%d" % j]
    check(not bad, "%s: %d keys not as saved, e.g. key:%d = %r" % (what, len(bad), bad[0], vals[bad[0]]) if bad else "")
    for i in range(0, BALLAST, 499):
        check(parse(c.call("GET", "ballast:%d" % i)) == bval(i, b"A"), "%s: ballast:%d not as saved" % (what, i))
    check(parse(c.call("EXISTS", "new:1")) == 0, "%s: a key written after the image exists" % what)
    c.close()
    print("ok: %s: %d keys exactly as in the previous image" % (what, n))


def crash_mid_bgsave():
    srv = Server(args=["--save", "", "--heap-size", "1gb", "--snapshot-mode", MODE, "--incremental", "yes"])
    c = srv.conn()
    load(c, b"A")
    check(c.call("SAVE") == b"+OK\r\n", "SAVE")
    path = os.path.join(srv.dir, "dump.ckpt")
    st0 = os.stat(path)
    # state B: every ballast value rewritten (so even an incremental
    # checkpoint carries ~150 MB), every key changed, new keys
    load(c, b"B")
    c.send_raw(b"".join(encode("SET", "new:%d" % i, "x") for i in range(1000)))
    for _ in range(1000):
        c.read_reply()
    r = c.call("BGSAVE")
    srv.kill9()
    check(r == b"+Background saving started\r\n", "BGSAVE: %r" % r)
    st1 = os.stat(path)
    check(st1.st_ino == st0.st_ino and st1.st_mtime == st0.st_mtime,
          "dump.ckpt was replaced before the SIGKILL: the checkpoint finished too fast for this test")
    temps = [f for f in os.listdir(srv.dir) if ".tmp." in f]
    print("killed mid-BGSAVE: image untouched, %d partial temp file(s) left: %s" % (len(temps), temps))

    again = Server(args=["--save", "", "--snapshot-mode", MODE, "--incremental", "yes"], dir=srv.dir)
    check_state_a(again, "%s mode, restart after SIGKILL mid-BGSAVE" % MODE)
    c = again.conn()
    check(c.call("BGSAVE") == b"+Background saving started\r\n", "BGSAVE after restart")
    info = again.wait_bgsave()
    check(info["rdb_last_bgsave_status"] == "ok", "BGSAVE after restart: %s" % info.get("ckpt_last_error"))
    left = [f for f in os.listdir(srv.dir) if ".tmp." in f]
    check(not left, "temp files of the killed checkpoint still there: %r" % left)
    c.close()
    again.stop()
    return srv.dir


def refuse_damaged(good_dir):
    good = open(os.path.join(good_dir, "dump.ckpt"), "rb").read()
    cases = []
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0x40
    cases.append(("a flipped byte", bytes(flipped)))
    cases.append(("truncated", good[:len(good) // 3]))
    cases.append(("not an image", b"REDIS0009" + b"\0" * 4096))
    for what, data in cases:
        d = tmpdir()
        p = os.path.join(d, "dump.ckpt")
        with open(p, "wb") as f:
            f.write(data)
        r = subprocess.run([BINARY, "--port", "0", "--dir", d, "--save", ""], capture_output=True, text=True,
                           timeout=60)
        out = r.stdout + r.stderr
        check(r.returncode == 1, "%s image: exit %d, output %r" % (what, r.returncode, out))
        check(p in out and "Refusing to start" in out, "%s image: message does not name the file: %r" % (what, out))
        check(open(p, "rb").read() == data, "%s image: file was modified" % what)
        print("ok: %s image refused: %s" % (what, [ln for ln in out.splitlines() if "restore" in ln or "Can't import" in ln][0][:300]))


def main():
    d = crash_mid_bgsave()
    if MODE == "thread":
        refuse_damaged(d)
    print("PASS crash %s" % MODE)


if __name__ == "__main__":
    main()
