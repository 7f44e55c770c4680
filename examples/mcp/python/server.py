#!/usr/bin/env python3
"""An example MCP server to host as a Tenantry runtime (protocol "mcp"), standard library only.

It speaks MCP's streamable HTTP transport on port 8000 (PORT) at /mcp: `initialize` opens a
session named in the `Mcp-Session-Id` header, `notifications/*` are accepted, `tools/list`
and `tools/call` answer as JSON, or as a one-event `text/event-stream` when the client
accepts both. Tenantry runs one sandbox of it per tenant session, so what it keeps in its
session storage (SESSION_DIR, default /mnt/session) belongs to that session alone.

Tools:
  whoami    the tenant context Tenantry injected (tenant, user, tier, runtime session)
  remember  {"text": "..."}  appends a note to session storage; returns how many it holds
  recall    the notes kept in session storage, oldest first
"""

import json
import os
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SESSION_DIR = os.environ.get("SESSION_DIR", "/mnt/session")
NOTES = os.path.join(SESSION_DIR, "notes.jsonl")
VERSIONS = ["2025-06-18", "2025-03-26", "2024-11-05"]
MAX_BODY = 1024 * 1024

TOOLS = [
    {
        "name": "whoami",
        "description": "Who is calling: the tenant context Tenantry passed to this server.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "remember",
        "description": "Keep a note in this session's storage.",
        "inputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string", "maxLength": 1000}},
            "required": ["text"],
        },
    },
    {
        "name": "recall",
        "description": "The notes kept in this session's storage, oldest first.",
        "inputSchema": {"type": "object", "properties": {}},
    },
]

_lock = threading.Lock()
_sessions = set()


def read_notes():
    try:
        with open(NOTES) as f:
            return [json.loads(line)["text"] for line in f if line.strip()]
    except FileNotFoundError:
        return []


def text_result(value, error=False):
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return {"content": [{"type": "text", "text": text}], "isError": error}


def call_tool(name, args, headers):
    if name == "whoami":
        return text_result({
            "tenant": headers.get("X-Tenantry-Tenant-Id"),
            "user": headers.get("X-Tenantry-User-Id"),
            "tier": headers.get("X-Tenantry-Tier"),
            "session": headers.get("X-Tenantry-Session-Id"),
            "has_workload_token": bool(headers.get("X-Tenantry-Workload-Token")),
        })
    if name == "remember":
        text = args.get("text")
        if not isinstance(text, str) or not text:
            return text_result("remember needs a non-empty `text`", error=True)
        with _lock:
            with open(NOTES, "a") as f:
                f.write(json.dumps({"text": text[:1000]}) + "\n")
            return text_result({"notes": len(read_notes())})
    if name == "recall":
        with _lock:
            return text_result({"notes": read_notes()})
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send(self, code, body=b"", content_type=None, extra=()):
        self.send_response(code)
        if content_type:
            self.send_header("Content-Type", content_type)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_message(self, message, extra=()):
        accept = self.headers.get("Accept", "")
        data = json.dumps(message)
        if "text/event-stream" in accept and "application/json" in accept:
            self.send(200, f"event: message\ndata: {data}\n\n".encode(), "text/event-stream", extra)
        else:
            self.send(200, data.encode(), "application/json", extra)

    def error(self, code, rpc_code, message, id=None):
        body = json.dumps({"jsonrpc": "2.0", "id": id, "error": {"code": rpc_code, "message": message}})
        self.send(code, body.encode(), "application/json")

    def do_GET(self):
        self.send(405, b"", None, [("Allow", "POST, DELETE")])

    def do_DELETE(self):
        if self.path.split("?")[0] != "/mcp":
            return self.send(404)
        with _lock:
            _sessions.discard(self.headers.get("Mcp-Session-Id"))
        self.send(200)

    def do_POST(self):
        if self.path.split("?")[0] != "/mcp":
            return self.send(404)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return self.error(413, -32600, "the message is too large")
        try:
            msg = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return self.error(400, -32700, "the body is not JSON")
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            return self.error(400, -32600, "send one JSON-RPC 2.0 message")
        method, id = msg.get("method"), msg.get("id")
        if method == "initialize":
            asked = (msg.get("params") or {}).get("protocolVersion")
            version = asked if asked in VERSIONS else VERSIONS[0]
            session = uuid.uuid4().hex
            with _lock:
                _sessions.add(session)
            result = {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "tenantry-example-notes", "version": "1.0.0"},
            }
            return self.send_message({"jsonrpc": "2.0", "id": id, "result": result},
                                     [("Mcp-Session-Id", session)])
        session = self.headers.get("Mcp-Session-Id")
        if not session:
            return self.error(400, -32600, "no Mcp-Session-Id: send initialize first", id)
        with _lock:
            known = session in _sessions
        if not known:
            return self.error(404, -32001, "unknown session", id)
        if id is None:
            return self.send(202)
        if method == "ping":
            return self.send_message({"jsonrpc": "2.0", "id": id, "result": {}})
        if method == "tools/list":
            return self.send_message({"jsonrpc": "2.0", "id": id, "result": {"tools": TOOLS}})
        if method == "tools/call":
            params = msg.get("params") or {}
            args = params.get("arguments") or {}
            result = call_tool(params.get("name"), args, self.headers)
            if result is None:
                return self.send_message({"jsonrpc": "2.0", "id": id, "error": {
                    "code": -32602, "message": f"unknown tool {params.get('name')!r}"}})
            return self.send_message({"jsonrpc": "2.0", "id": id, "result": result})
        return self.send_message({"jsonrpc": "2.0", "id": id, "error": {
            "code": -32601, "message": f"method {method!r} is not offered"}})


def main():
    os.makedirs(SESSION_DIR, exist_ok=True)
    port = int(os.environ.get("PORT", "8000"))
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
