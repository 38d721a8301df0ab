#!/usr/bin/env python3
"""Before AUTH a client cannot make the server allocate for it: at most 10
arguments and 16 KiB bulks (Redis's limits); after AUTH the usual limits
apply.  A wrong password of the right length is refused like any other."""
import socket
from rclib import Server, Conn, check, encode

def raw_exchange(port, data):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    out = b""
    try:
        while True:
            d = s.recv(4096)
            if not d:
                break
            out += d
    except socket.timeout:
        pass
    s.close()
    return out

srv = Server(args=["--requirepass", "s3cret", "--save", "", "--heap-size", "64mb"])
r = raw_exchange(srv.port, b"*11\r\n")
check(r == b"-ERR Protocol error: invalid multibulk length\r\n", "11 args before AUTH: %r" % r)
r = raw_exchange(srv.port, b"*2\r\n$4\r\nAUTH\r\n$20000\r\n")
check(r == b"-ERR Protocol error: invalid bulk length\r\n", "20000-byte bulk before AUTH: %r" % r)
r = raw_exchange(srv.port, b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3creX\r\n")
check(r.startswith(b"-WRONGPASS"), "wrong password of the right length: %r" % r)
c = Conn(srv.port)
check(c.call("AUTH", "s3cret") == b"+OK\r\n", "AUTH")
big = "x" * 20000
check(c.call("SET", "big", big) == b"+OK\r\n", "20000-byte bulk after AUTH")
check(c.call("MSET", *sum([["k%d" % i, "v"] for i in range(6)], [])) == b"+OK\r\n", "13 args after AUTH")
c.close()
print("PASS auth_limits")
