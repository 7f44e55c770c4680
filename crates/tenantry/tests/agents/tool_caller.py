#!/usr/bin/env python3
"""A test agent that calls the tool gateway as an MCP client would: POST {TENANTRY_ENDPOINT}/mcp
with `Authorization: Bearer {OPENAI_API_KEY}` (the sandbox's platform credential, which the
platform turns into the session's workload token): initialize, notifications/initialized,
tools/call. Each invocation's body names the `tool` and its `arguments`; the answer is the
JSON-RPC response of the call."""

import json
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MCP = os.environ["TENANTRY_ENDPOINT"].rstrip("/") + "/mcp"


def post(message, session=None):
    req = urllib.request.Request(MCP, data=json.dumps(message).encode(), method="POST")
    req.add_header("Authorization", "Bearer " + os.environ["OPENAI_API_KEY"])
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/json, text/event-stream")
    req.add_header("MCP-Protocol-Version", "2025-06-18")
    if session:
        req.add_header("Mcp-Session-Id", session)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            body = resp.read()
            return resp.status, resp.headers.get("Mcp-Session-Id"), json.loads(body) if body else None
    except urllib.error.HTTPError as e:
        return e.code, None, json.loads(e.read() or b"null")


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
        try:
            status, session, init = post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "tool-caller", "version": "1"}}})
            if status != 200 or not session:
                return self.send_json(200, {"initialize": {"status": status, "body": init}})
            post({"jsonrpc": "2.0", "method": "notifications/initialized"}, session)
            status, _, answer = post({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
                "name": req.get("tool", ""), "arguments": req.get("arguments", {})}}, session)
            self.send_json(200, {"status": status, "answer": answer})
        except OSError as e:
            self.send_json(200, {"error": str(e)})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ.get("PORT", "8080"))), Handler)
    server.daemon_threads = True
    server.serve_forever()
