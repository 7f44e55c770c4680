# An AgentCore-style agent that can be told to allocate memory until it is killed.
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

hoard = []

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
        if body.get("allocate_mb"):
            for _ in range(int(body["allocate_mb"])):
                hoard.append(bytearray(1024 * 1024))
        self.reply({"allocated_mb": len(hoard)})

ThreadingHTTPServer(("127.0.0.1", 8080), H).serve_forever()
