# An agent that reports the file descriptors it was started with (before it opened any of its
# own) and what it can read through descriptors it did not open: an inherited descriptor is a
# way out of the sandbox.
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


def inherited():
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[name] = os.readlink("/proc/self/fd/" + name)
        except OSError:
            pass  # the listing's own descriptor, closed by now
    return out


AT_START = inherited()


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
        read = {}
        for fd in body.get("read_fds", []):
            try:
                read[str(fd)] = os.pread(int(fd), 256, 0).decode("utf-8", "replace")
            except OSError as e:
                read[str(fd)] = "error: " + e.strerror
        self.reply({"fds_at_start": AT_START, "read": read})


HTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), H).serve_forever()
