"""rclib.py - helpers for redis-ckpt's script tests: free ports, starting and
always stopping servers (redis-ckpt and, for comparisons, redis-server), and a
raw RESP client that returns the exact bytes of each reply."""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
BINARY = os.environ.get("RC_BINARY") or os.path.join(ROOT, "examples", "redis-ckpt", "redis-ckpt")

_procs = []
_tmpdirs = []


def _cleanup():
    for p in _procs:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=10)
            except Exception:
                pass
    if not os.environ.get("RC_KEEP_TMP"):
        for d in _tmpdirs:
            shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)
for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, lambda s, f: sys.exit(128 + s))


def tmpdir(prefix="rc-test-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _tmpdirs.append(d)
    return d


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Server:
    """A server process on a free port in a temp dir, stopped at exit."""

    def __init__(self, kind="ckpt", args=(), dir=None, port=None, wait=True):
        self.kind = kind
        self.dir = dir or tmpdir()
        self.port = port or free_port()
        self.log = os.path.join(self.dir, "server.log")
        args = list(args)
        # SHUTDOWN needs AUTH on a server with a password, as in Redis
        self.password = args[args.index("--requirepass") + 1] if "--requirepass" in args else None
        if kind == "ckpt":
            cmd = [BINARY, "--port", str(self.port), "--dir", self.dir, "--logfile", self.log] + list(args)
        else:
            cmd = ["redis-server", "--port", str(self.port), "--dir", self.dir, "--save", "",
                   "--appendonly", "no", "--logfile", self.log, "--daemonize", "no"] + list(args)
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        _procs.append(self.proc)
        # the .sh wrapper's trap kills these even if python itself is killed
        if os.environ.get("RC_PIDFILE"):
            with open(os.environ["RC_PIDFILE"], "a") as f:
                f.write("%d\n" % self.proc.pid)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                fail("%s exited with %d at start-up:\n%s" % (self.cmd, self.proc.returncode, self.output()))
            try:
                c = Conn(self.port)
                r = c.call("PING")
                c.close()
                if r == b"+PONG\r\n" or r.startswith(b"-NOAUTH"):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        fail("server on port %d not ready after %ds:\n%s" % (self.port, timeout, self.output()))

    def output(self):
        out = ""
        if self.proc.stdout and self.proc.poll() is not None:
            out += self.proc.stdout.read().decode(errors="replace")
        if os.path.exists(self.log):
            with open(self.log, errors="replace") as f:
                out += f.read()
        return out[-4000:]

    def alive(self):
        return self.proc.poll() is None

    def kill9(self):
        self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self, nosave=True):
        if self.proc.poll() is None:
            try:
                c = Conn(self.port)
                auth = encode("AUTH", self.password) if self.password else b""
                c.send_raw(auth + (b"SHUTDOWN NOSAVE\r\n" if nosave else b"SHUTDOWN\r\n"))
                c.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode

    def conn(self):
        return Conn(self.port)

    def info(self, section="persistence"):
        c = self.conn()
        r = c.call("INFO", section)
        c.close()
        text = parse(r).decode()
        d = {}
        for line in text.split("\r\n"):
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                d[k] = v
        return d

    def wait_bgsave(self, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            i = self.info()
            if i["rdb_bgsave_in_progress"] == "0":
                return i
            time.sleep(0.02)
        fail("BGSAVE still running after %ds" % timeout)


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, str):
            a = a.encode()
        elif isinstance(a, (int, float)):
            a = str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    """A raw RESP connection: replies come back as their exact bytes."""

    def __init__(self, port, timeout=30):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.s.close()

    def send_raw(self, data):
        self.s.sendall(data)

    def _fill(self):
        d = self.s.recv(1 << 20)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def _line(self, pos):
        while True:
            i = self.buf.find(b"\r\n", pos)
            if i >= 0:
                return i
            self._fill()

    def _reply_end(self, pos):
        """Index just past the reply starting at pos (reads as needed)."""
        while len(self.buf) <= pos:
            self._fill()
        t = self.buf[pos:pos + 1]
        e = self._line(pos)
        if t in (b"+", b"-", b":"):
            return e + 2
        n = int(self.buf[pos + 1:e])
        if t == b"$":
            if n < 0:
                return e + 2
            while len(self.buf) < e + 2 + n + 2:
                self._fill()
            return e + 2 + n + 2
        if t == b"*":
            p = e + 2
            for _ in range(max(n, 0)):
                p = self._reply_end(p)
            return p
        raise ValueError("bad reply type %r in %r" % (t, self.buf[pos:pos + 50]))

    def read_reply(self):
        end = self._reply_end(0)
        r, self.buf = self.buf[:end], self.buf[end:]
        return r

    def call(self, *args):
        self.send_raw(encode(*args))
        return self.read_reply()

    def closed_by_peer(self, timeout=5):
        """True if the server closes the connection (after any pending data)."""
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(65536)
                if not d:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


def parse(raw):
    """Decodes a raw reply into Python values (bytes, int, list, None, Err)."""
    v, _ = _parse(raw, 0)
    return v


class Err(str):
    pass


def _parse(b, p):
    t = b[p:p + 1]
    e = b.index(b"\r\n", p)
    body = b[p + 1:e]
    if t == b"+":
        return body, e + 2
    if t == b"-":
        return Err(body.decode()), e + 2
    if t == b":":
        return int(body), e + 2
    n = int(body)
    if t == b"$":
        if n < 0:
            return None, e + 2
        return b[e + 2:e + 2 + n], e + 2 + n + 2
    if n < 0:
        return None, e + 2
    out, q = [], e + 2
    for _ in range(n):
        v, q = _parse(b, q)
        out.append(v)
    return out, q
