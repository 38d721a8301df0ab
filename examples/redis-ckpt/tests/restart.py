"""restart.py - --restore lazy (the default) and --restore eager give the
same dataset; a lazy restart answers before the heap is resident and INFO
reports the warm-up (ckpt_restore_*); a block damaged in the image is never
served: the eager server refuses to start, the lazy one stops (exit 1) as
soon as its loaders find the damage, naming the file, and leaves it alone."""
import hashlib
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from rclib import Server, check, encode, parse  # noqa: E402

NKEYS = 60000


def populate(c):
    batch = []
    for i in range(NKEYS):
        batch.append(encode("SET", "k:%d" % i, ("v%d-" % i) * (1 + i % 40)))
        if len(batch) == 1000:
            c.send_raw(b"".join(batch))
            for _ in batch:
                c.read_reply()
            batch = []
    check(c.call("RPUSH", "list", *["e%d" % i for i in range(500)]).startswith(b":"), "RPUSH")
    check(c.call("HSET", "hash", "f", "v", "g", "w").startswith(b":"), "HSET")


def verify(c, what):
    check(parse(c.call("DBSIZE")) == NKEYS + 2, "%s: DBSIZE %r" % (what, c.call("DBSIZE")))
    for start in range(0, NKEYS, 1000):
        c.send_raw(b"".join(encode("GET", "k:%d" % i) for i in range(start, start + 1000)))
        for i in range(start, start + 1000):
            r = c.read_reply()
            want = ("v%d-" % i) * (1 + i % 40)
            check(parse(r) == want.encode(), "%s: GET k:%d gave %r" % (what, i, r[:60]))
    check(parse(c.call("LLEN", "list")) == 500, "%s: LLEN" % what)
    check(parse(c.call("HGET", "hash", "g")) == b"w", "%s: HGET" % what)


def start_timed(d, mode):
    t0 = time.time()
    s = Server(args=["--save", "", "--restore", mode], dir=d, wait=False)
    s.wait_ready()
    return s, (time.time() - t0) * 1000


def damage_middle_block(path):
    with open(path, "rb") as f:
        img = bytearray(f.read())
    trailer_off = struct.unpack_from("<Q", img, len(img) - 64)[0]
    nblocks = struct.unpack_from("<Q", img, trailer_off + 8)[0]
    check(nblocks >= 8, "want several blocks, got %d" % nblocks)
    ent = trailer_off + 64 + 32 * (nblocks // 2)
    boff = struct.unpack_from("<Q", img, ent)[0]
    data_len = struct.unpack_from("<I", img, boff + 20)[0]
    img[boff + 64 + data_len // 2] ^= 0x10
    with open(path, "wb") as f:
        f.write(img)


def main():
    srv = Server(args=["--save", "", "--heap-size", "256mb"])
    c = srv.conn()
    populate(c)
    check(c.call("SAVE") == b"+OK\r\n", "SAVE")
    srv.stop(nosave=True)
    path = os.path.join(srv.dir, "dump.ckpt")

    s, ms_lazy = start_timed(srv.dir, "lazy")
    info = s.info()
    check(info.get("ckpt_restore_mode") == "lazy", "INFO ckpt_restore_mode: %r" % info.get("ckpt_restore_mode"))
    check(int(info["ckpt_restore_total_pages"]) > 1000, "INFO ckpt_restore_total_pages: %r" % info)
    verify(s.conn(), "lazy")
    end = time.time() + 60
    while time.time() < end and s.info()["ckpt_restore_status"] != "resident":
        time.sleep(0.05)
    info = s.info()
    check(info["ckpt_restore_status"] == "resident" and
          info["ckpt_restore_resident_pages"] == info["ckpt_restore_total_pages"], "warm-up did not end: %r" % info)
    # the lazily restored heap checkpoints, and that image restores eagerly
    c = s.conn()
    c.call("SET", "after", "lazy")
    check(c.call("SAVE") == b"+OK\r\n", "SAVE after a lazy restore")
    s.stop(nosave=True)
    s, ms_eager = start_timed(srv.dir, "eager")
    check(s.info().get("ckpt_restore_mode") == "eager", "INFO ckpt_restore_mode eager")
    c = s.conn()
    check(parse(c.call("GET", "after")) == b"lazy", "the key written after the lazy restore")
    c.call("DEL", "after")
    verify(c, "eager")
    check(c.call("SAVE") == b"+OK\r\n", "SAVE")
    s.stop(nosave=True)
    print("ok: lazy and eager restarts hold the same dataset; first reply lazy %.1f ms, eager %.1f ms "
          "(shared machine)" % (ms_lazy, ms_eager))

    # a damaged block
    damage_middle_block(path)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    e = Server(args=["--save", "", "--restore", "eager"], dir=srv.dir, wait=False)
    check(e.proc.wait(timeout=60) == 1, "eager restart over a damaged image did not refuse to start")
    check("CKPT_E_CORRUPT" in e.output(), "eager refusal does not name the damage: %s" % e.output())
    s = Server(args=["--save", "", "--restore", "lazy"], dir=srv.dir, wait=False)
    check(s.proc.wait(timeout=60) == 1, "lazy restart over a damaged image did not stop")
    out = s.output()
    check("damaged" in out and "Refusing to start" in out and path in out and "block" in out,
          "the damage was not logged:\n%s" % out)
    check(hashlib.sha256(open(path, "rb").read()).hexdigest() == digest, "the image was overwritten")
    print("ok: a damaged block: eager refuses to start; lazy finds it while warming up, logs it and exits")


if __name__ == "__main__":
    main()
