"""ledger backend: /health and /entries (JSON), one JSON log line per request on stdout."""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        started = time.monotonic()
        if self.path == "/health":
            status, body = 200, {"status": "ok"}
        elif self.path.startswith("/entries"):
            status, body = 200, {"entries": [{"id": i, "cents": i * 37} for i in range(1, 11)]}
        else:
            status, body = 404, {"error": "not found"}
        self._send(status, body)
        print(json.dumps({"level": "info" if status < 400 else "warning",
                          "msg": f"{self.command} {self.path} {status}", "status": status,
                          "ms": round((time.monotonic() - started) * 1000, 2)}), flush=True)

    def log_message(self, *args):  # the JSON line above replaces the default access log
        pass


if __name__ == "__main__":
    print(json.dumps({"level": "info", "msg": "ledger backend listening on :9000"}), flush=True)
    sys.stdout.flush()
    ThreadingHTTPServer(("0.0.0.0", 9000), Handler).serve_forever()
