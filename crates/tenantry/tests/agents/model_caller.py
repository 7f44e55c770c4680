#!/usr/bin/env python3
"""A test agent that calls the model gateway the way OpenAI-compatible frameworks do: POST
{OPENAI_BASE_URL}/chat/completions with `Authorization: Bearer {OPENAI_API_KEY}`, both set by
the platform. Each invocation's body names the `model` (default "default") and the `prompt`;
the answer is the gateway's status and body."""

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
        payload = json.dumps({
            "model": req.get("model", "default"),
            "messages": [{"role": "user", "content": req.get("prompt", "")}],
        }).encode()
        call = urllib.request.Request(
            os.environ["OPENAI_BASE_URL"].rstrip("/") + "/chat/completions",
            data=payload, method="POST")
        call.add_header("Authorization", "Bearer " + os.environ["OPENAI_API_KEY"])
        call.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(call, timeout=10) as resp:
                out = {"status": resp.status, "body": json.loads(resp.read())}
        except urllib.error.HTTPError as e:
            out = {"status": e.code, "body": json.loads(e.read() or b"null")}
        except OSError as e:
            out = {"error": str(e)}
        self.send_json(200, out)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Handler)
    server.daemon_threads = True
    server.serve_forever()
