#!/usr/bin/env python3
"""A test agent that calls the platform's memory API as its session: each invocation's body
names a `method`, a `path` under TENANTRY_ENDPOINT and an optional JSON `body`; the call carries
`Authorization: Bearer {OPENAI_API_KEY}` (the sandbox's secret, which the platform's bridge
replaces with the session's workload token). The answer is the API's status and body."""

import json
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.send_json(200, {"status": "Healthy"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        req = json.loads(self.rfile.read(length) or b"{}")
        data = None
        if req.get("body") is not None:
            data = json.dumps(req["body"]).encode()
        call = urllib.request.Request(
            os.environ["TENANTRY_ENDPOINT"].rstrip("/") + req["path"],
            data=data, method=req.get("method", "GET"))
        call.add_header("Authorization", "Bearer " + os.environ["OPENAI_API_KEY"])
        if data is not None:
            call.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(call, timeout=10) as resp:
                out = {"status": resp.status, "body": json.loads(resp.read() or b"null")}
        except urllib.error.HTTPError as e:
            out = {"status": e.code, "body": json.loads(e.read() or b"null")}
        except OSError as e:
            out = {"error": str(e)}
        self.send_json(200, out)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Handler)
    server.daemon_threads = True
    server.serve_forever()
