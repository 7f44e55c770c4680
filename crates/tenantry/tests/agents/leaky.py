# An agent that hands back what a careless agent could leak (its workload token, its tenant
# context, the files in its session storage) and reads, writes or keeps writing its storage on
# request: the lifecycle tests use it to see what an old sandbox, token or storage could reach.
# Arguments: a marker (ignored; tests find the process by it) and, optionally, seconds to wait
# before listening (a slow start).
import os
import sys
import threading
import time

from jsonagent import JsonHandler, serve

DIR = os.environ.get("SESSION_DIR", "/mnt/session")


def count_invocations():
    path = os.path.join(DIR, "invocations")
    n = int(open(path).read()) + 1 if os.path.exists(path) else 1
    with open(path, "w") as f:
        f.write(str(n))
    return n


def keep_writing():
    path = os.path.join(DIR, "background.log")
    while True:
        try:
            with open(path, "a") as f:
                f.write("%f\n" % time.time())
        except OSError:
            pass
        time.sleep(0.05)


class H(JsonHandler):
    def do_POST(self):
        body = self.body()
        for name, data in body.get("write", {}).items():
            with open(os.path.join(DIR, name), "w") as f:
                f.write(data)
        out = {
            "invocations_in_session": count_invocations(),
            "workload_token": self.headers.get("X-Tenantry-Workload-Token"),
            "tenant": self.headers.get("X-Tenantry-Tenant-Id"),
            "files": sorted(os.listdir(DIR)),
        }
        if "read" in body:
            path = os.path.join(DIR, body["read"])
            out["read"] = open(path).read() if os.path.exists(path) else None
        if body.get("background"):
            threading.Thread(target=keep_writing, daemon=True).start()
        self.reply(out)


if len(sys.argv) > 2:
    time.sleep(float(sys.argv[2]))
serve(H)
