# What the JSON test agents share, so each one holds only its own behaviour: a handler that
# answers GET (the platform's /ping) with {"status": "Healthy"}, reads a POST's JSON body and
# replies in JSON over HTTP/1.1 without logging, and `serve`, which listens on the agent port.
# It must stay free of any test's behaviour: an agent imports it from its own directory.
import json
import os
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
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

    def body(self):
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")

    def do_GET(self):
        self.reply({"status": "Healthy"})


def serve(handler, threaded=True):
    """Serves `handler` on 127.0.0.1 at $PORT (8080, the platform's agent port, when unset)."""
    server = ThreadingHTTPServer if threaded else HTTPServer
    server(("127.0.0.1", int(os.environ.get("PORT", "8080"))), handler).serve_forever()
