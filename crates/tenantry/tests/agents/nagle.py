# A deliberately Nagle-prone agent: http.server as most hand-written agents use it, writing a
# response's head and body in two writes, with no TCP_NODELAY and the default listen backlog.
# Kept-alive callers that delay their acknowledgements see each answer 40 ms late unless they
# acknowledge at once. PORT sets the port (the platform sets 8080 in a sandbox). With the
# argument "nodelay" it sets TCP_NODELAY: the same agent without the stall, for comparison.
import json
import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

NODELAY = "nodelay" in sys.argv[1:]


class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, obj):
        b = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()  # first write: the head
        self.wfile.write(b)  # second write: the body

    def do_GET(self):
        self.reply({"status": "Healthy"})

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply({"ok": True, "pad": "x" * 200})


class Server(HTTPServer):
    def get_request(self):
        conn, addr = super().get_request()
        if NODELAY:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


Server(("127.0.0.1", int(os.environ.get("PORT", "8080"))), H).serve_forever()
