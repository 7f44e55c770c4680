# An agent that writes as many megabytes into its session storage as it is asked to.
import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIR = os.environ.get("SESSION_DIR", "/mnt/session")


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, obj):
        b = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        self.reply({"status": "Healthy"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        mb = int(body.get("write_mb", 0))
        with open(os.path.join(DIR, "blob-%d" % len(os.listdir(DIR))), "wb") as f:
            for _ in range(mb):
                f.write(b"\0" * (1024 * 1024))
        if body.get("clean"):
            for name in os.listdir(DIR):
                os.remove(os.path.join(DIR, name))
        self.reply({"files": len(os.listdir(DIR))})


ThreadingHTTPServer(("127.0.0.1", 8080), H).serve_forever()
