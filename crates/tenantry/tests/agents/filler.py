# An agent that writes as many megabytes into its session storage as it is asked to.
import os

from jsonagent import JsonHandler, serve

DIR = os.environ.get("SESSION_DIR", "/mnt/session")


class H(JsonHandler):
    def do_POST(self):
        body = self.body()
        mb = int(body.get("write_mb", 0))
        with open(os.path.join(DIR, "blob-%d" % len(os.listdir(DIR))), "wb") as f:
            for _ in range(mb):
                f.write(b"\0" * (1024 * 1024))
        if body.get("clean"):
            for name in os.listdir(DIR):
                os.remove(os.path.join(DIR, name))
        self.reply({"files": len(os.listdir(DIR))})


serve(H)
