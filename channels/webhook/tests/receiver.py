"""A webhook receiver for Postbud's tests that verifies every request with the Standard Webhooks
reference library (PyPI `standardwebhooks`), once per configured secret.

Answers with the statuses given by --responses in order (then 200); 429 and 503 carry
`Retry-After: 1`. Each request is appended to --log as one JSON line. Prints READY.
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--log", required=True)
parser.add_argument("--secret", action="append", default=[])
parser.add_argument("--responses", default="")
args = parser.parse_args()
responses = [int(s) for s in args.responses.split(",") if s]
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        verified = {}
        for secret in args.secret:
            try:
                Webhook(secret).verify(body, headers)
                verified[secret] = True
            except Exception as error:  # the library's own verdict, kept for the test to read
                verified[secret] = "%s: %s" % (type(error).__name__, error)
        with lock:
            status = responses.pop(0) if responses else 200
            with open(args.log, "a") as log:
                log.write(json.dumps({"headers": headers, "body": body.decode(), "verified": verified, "status": status}) + "\n")
        self.send_response(status)
        if status in (429, 503):
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"status": status, "received": headers.get("webhook-id")}).encode())


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
print("READY", flush=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
sys.stdin.read()
