"""demo_check.py - the demo's client-side steps that redis-cli cannot do
in one go.
  demo_check.py PORT samples-write TAG N   SET sample:i = "TAG-i-..." for i < N
  demo_check.py PORT samples-check TAG N   all sample:i hold TAG's values?
  demo_check.py PORT strlen-all LEN        every key:* value has length LEN?
  demo_check.py PORT bgsave-and-write TAG N KEYS
                                           BGSAVE, then at once overwrite the N
                                           samples with TAG's values and key:*
                                           (of KEYS) with 64-byte values while
                                           the checkpoint runs
Prints one line; exit 0 when the check holds."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "tests"))
from rclib import Conn, encode, parse  # noqa: E402


def sample_value(tag, i):
    return "%s-%d-%s" % (tag, i, "%08x" % ((i * 2654435761) & 0xFFFFFFFF))


def main():
    port, what = int(sys.argv[1]), sys.argv[2]
    c = Conn(port, timeout=120)
    if what == "samples-write":
        tag, n = sys.argv[3], int(sys.argv[4])
        c.send_raw(b"".join(encode("SET", "sample:%d" % i, sample_value(tag, i)) for i in range(n)))
        for _ in range(n):
            if c.read_reply() != b"+OK\r\n":
                print("SET failed")
                return 1
        return 0
    if what == "samples-check":
        tag, n = sys.argv[3], int(sys.argv[4])
        vals = parse(c.call("MGET", *["sample:%d" % i for i in range(n)]))
        bad = [i for i in range(n) if vals[i] != sample_value(tag, i).encode()]
        if bad:
            print("%d of %d sample values differ from those written before BGSAVE, e.g. sample:%d = %r"
                  % (len(bad), n, bad[0], vals[bad[0]]))
            return 1
        print("all %d sample values are those written just before BGSAVE (overwritten during it)" % n)
        return 0
    if what == "bgsave-and-write":
        import random
        tag, n, nkeys = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        # BGSAVE and the overwrites go out in one write: the server runs
        # them back to back, right after the checkpoint's instant
        first = [encode("SET", "key:%012d" % random.randrange(nkeys), "y" * 64) for _ in range(5000)]
        c.send_raw(encode("BGSAVE") +
                   b"".join(encode("SET", "sample:%d" % i, sample_value(tag, i)) for i in range(n)) +
                   encode("INFO", "persistence") + b"".join(first) + encode("INFO", "persistence"))
        r = c.read_reply()
        print("BGSAVE: %s" % r.decode().strip().lstrip("+"))
        if r != b"+Background saving started\r\n":
            return 1
        for _ in range(n):
            c.read_reply()
        running = b"rdb_bgsave_in_progress:1" in c.read_reply()
        print("%d sample keys overwritten %s" % (
            n, "while the checkpoint was running" if running else "(the checkpoint had already finished)"))
        for _ in range(len(first)):
            c.read_reply()
        running = b"rdb_bgsave_in_progress:1" in c.read_reply()
        during = len(first)
        while running and during < 200000:
            batch = [encode("SET", "key:%012d" % random.randrange(nkeys), "y" * 64) for _ in range(1000)]
            c.send_raw(b"".join(batch) + encode("INFO", "persistence"))
            for _ in range(1000):
                c.read_reply()
            running = b"rdb_bgsave_in_progress:1" in c.read_reply()
            during += 1000
        print("%d loaded key:* values overwritten with 64-byte values right after BGSAVE" % during)
        return 0
    if what == "strlen-all":
        want = int(sys.argv[3])
        cursor, checked, bad, example = b"0", 0, 0, None
        while True:
            cursor, keys = parse(c.call("SCAN", cursor, "MATCH", "key:*", "COUNT", "2000"))
            if keys:
                c.send_raw(b"".join(encode("STRLEN", k) for k in keys))
                for k in keys:
                    n = parse(c.read_reply())
                    checked += 1
                    if n != want:
                        bad += 1
                        example = example or (k, n)
            if cursor == b"0":
                break
        if bad:
            print("%d of %d key:* values are not %d bytes long (e.g. %r): written after BGSAVE?"
                  % (bad, checked, want, example))
            return 1
        print("all %d key:* values are the %d-byte values loaded before BGSAVE" % (checked, want))
        return 0
    print("unknown step %s" % what)
    return 2


if __name__ == "__main__":
    sys.exit(main())
