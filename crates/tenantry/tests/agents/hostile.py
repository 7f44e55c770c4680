# A hostile agent: on each invocation it tries to break out of its sandbox in the ways the
# request names, and reports what worked. Every "escaped" entry must come back false.
import os
import signal
import socket

from jsonagent import JsonHandler, serve


def attempt(fn):
    try:
        fn()
        return True
    except Exception:
        return False


def read(path):
    with open(path, "rb") as f:
        f.read(1)


def write(path):
    with open(path, "w") as f:
        f.write("x")


def connect(host, port):
    s = socket.create_connection((host, port), timeout=2)
    s.close()


def probe(req):
    r = {}
    for i, p in enumerate(req.get("read", [])):
        r["read:" + p] = attempt(lambda p=p: read(p))
    for p in req.get("write", []):
        r["write:" + p] = attempt(lambda p=p: write(p))
    for pid in req.get("signal", []):
        r["signal:%d" % pid] = attempt(lambda pid=pid: os.kill(pid, 0))
    for host, port in req.get("connect", []):
        r["connect:%s:%d" % (host, port)] = attempt(lambda h=host, p=port: connect(h, p))
    pids = sorted(int(d) for d in os.listdir("/proc") if d.isdigit())
    return {"escaped": r, "visible_pids": pids, "uid": os.getuid()}


class H(JsonHandler):
    def do_POST(self):
        self.reply(probe(self.body()))


serve(H)
