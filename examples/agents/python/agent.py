#!/usr/bin/env python3
"""An example Tenantry agent in Python, standard library only.

It serves the runtime contract (the same as AWS Bedrock AgentCore's):
  POST /invocations  JSON in; JSON out, or Server-Sent Events when the request asks to stream
  GET  /ping         {"status": "Healthy"} or {"status": "HealthyBusy"} while background work runs

Each invocation echoes the tenant context Tenantry injected, bumps a counter file kept in the
session storage directory (SESSION_DIR, default /mnt/session), and, when asked, calls the
platform back at TENANTRY_ENDPOINT with the session's workload token.

Request body fields (all optional):
  prompt         text to echo
  stream         true for a text/event-stream answer, one event per word
  call_platform  true to call GET {TENANTRY_ENDPOINT}/v1/me with the workload token
  busy_seconds   report HealthyBusy on /ping for this many seconds
"""

import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SESSION_DIR = os.environ.get("SESSION_DIR", "/mnt/session")
COUNTER = os.path.join(SESSION_DIR, "counter")
CONTEXT_HEADERS = [
    "X-Tenantry-Tenant-Id",
    "X-Tenantry-Tier",
    "X-Tenantry-User-Id",
    "X-Tenantry-Session-Id",
    "X-Tenantry-Region",
    "X-Tenantry-Features",
    "X-Tenantry-Entitlements",
    "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id",
]
CUSTOM_PREFIXES = ("x-tenantry-custom-", "x-amzn-bedrock-agentcore-runtime-custom-")

_lock = threading.Lock()
_busy_until = 0.0


def bump_counter():
    """Increments the counter in session storage; survives stop and resume of the session."""
    with _lock:
        try:
            with open(COUNTER) as f:
                n = int(f.read().strip() or "0")
        except FileNotFoundError:
            n = 0
        n += 1
        tmp = COUNTER + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(n))
        os.replace(tmp, COUNTER)
        return n


def call_platform(token):
    endpoint = os.environ.get("TENANTRY_ENDPOINT")
    if not endpoint:
        return {"error": "TENANTRY_ENDPOINT is not set"}
    req = urllib.request.Request(endpoint.rstrip("/") + "/v1/me")
    req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return {"status": resp.status, "body": json.loads(resp.read() or b"null")}
    except urllib.error.HTTPError as e:
        return {"status": e.code, "body": e.read().decode("utf-8", "replace")}
    except OSError as e:
        return {"error": str(e)}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the agent quiet; the platform logs requests
        pass

    def send_json(self, status, value):
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/ping":
            busy = time.time() < _busy_until
            self.send_json(200, {"status": "HealthyBusy" if busy else "Healthy"})
        else:
            self.send_json(404, {"error": "not found"})

    def do_POST(self):
        global _busy_until
        if self.path != "/invocations":
            self.send_json(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            payload = json.loads(raw or b"{}")
        except ValueError:
            self.send_json(400, {"error": "the body must be JSON"})
            return
        if not isinstance(payload, dict):
            payload = {"prompt": payload}
        context = {h: self.headers.get(h) for h in CONTEXT_HEADERS if self.headers.get(h) is not None}
        custom = {k: v for k, v in self.headers.items() if k.lower().startswith(CUSTOM_PREFIXES)}
        token = (
            self.headers.get("X-Tenantry-Workload-Token")
            or self.headers.get("X-Amzn-Bedrock-AgentCore-Runtime-Workload-AccessToken")
            or os.environ.get("OPENAI_API_KEY", "")
        )
        if payload.get("log"):
            # What an agent prints is kept per session: GET /v1/sessions/{id}/logs.
            print(str(payload["log"]), file=sys.stderr, flush=True)
        if payload.get("busy_seconds"):
            _busy_until = time.time() + float(payload["busy_seconds"])
        answer = {
            "agent": "python-example",
            "echo": payload.get("prompt", ""),
            "context": context,
            "custom_headers": custom,
            "invocations_in_session": bump_counter(),
            "has_workload_token": bool(token),
        }
        if payload.get("call_platform"):
            answer["platform"] = call_platform(token)
        if payload.get("stream") or "text/event-stream" in (self.headers.get("Accept") or ""):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for word in str(answer["echo"]).split() or [""]:
                self.wfile.write(b"data: " + json.dumps({"delta": word}).encode() + b"\n\n")
                self.wfile.flush()
            self.wfile.write(b"data: " + json.dumps({"done": answer}).encode() + b"\n\n")
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_json(200, answer)


class Server(ThreadingHTTPServer):
    # Python's default backlog is 5: a burst of new connections past that is dropped, and the
    # client's retry comes a second later.
    request_queue_size = 128
    daemon_threads = True

    def get_request(self):
        conn, addr = super().get_request()
        # http.server writes a response's head and body in separate writes: without this, the
        # body waits for the head's acknowledgement (Nagle), which a kept-alive client may
        # delay by up to 40 ms.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


def main():
    port = int(os.environ.get("PORT", "8080"))
    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
