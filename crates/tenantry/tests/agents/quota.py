# An agent that fills its session storage on request, in the invocation or from a background
# thread that keeps going after the invocation returned, reports what it managed to write and
# the error that stopped it, and deletes files on request.
import errno
import os
import threading

from jsonagent import JsonHandler, serve

DIR = os.environ.get("SESSION_DIR", "/mnt/session")
MB = 1024 * 1024
background = {"written": 0, "error": None, "done": False}


def fill(name, mb, report):
    chunk = b"\1" * (64 * 1024)
    try:
        with open(os.path.join(DIR, name), "wb") as f:
            for _ in range(mb * 16):
                f.write(chunk)
                f.flush()
                report["written"] += len(chunk)
            os.fsync(f.fileno())
    except OSError as e:
        report["error"] = errno.errorcode.get(e.errno, str(e.errno))
    report["done"] = True


class H(JsonHandler):
    def do_POST(self):
        body = self.body()
        out = {}
        for name in body.get("delete", []):
            os.remove(os.path.join(DIR, name))
        for name, text in body.get("put", {}).items():
            try:
                with open(os.path.join(DIR, name), "w") as f:
                    f.write(text)
                out.setdefault("put", {})[name] = "ok"
            except OSError as e:
                out.setdefault("put", {})[name] = errno.errorcode.get(e.errno, str(e.errno))
        if "get" in body:
            path = os.path.join(DIR, body["get"])
            out["get"] = open(path).read() if os.path.exists(path) else None
        if "write_mb" in body:
            report = {"written": 0, "error": None, "done": False}
            fill(body.get("name", "blob"), int(body["write_mb"]), report)
            out["write"] = report
        if "background_mb" in body:
            threading.Thread(
                target=fill, args=("background", int(body["background_mb"]), background), daemon=True
            ).start()
        out["background"] = background
        out["files"] = sorted(os.listdir(DIR))
        self.reply(out)


serve(H)
