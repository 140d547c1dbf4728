#!/usr/bin/env python3
"""A Sluice custom node type in Python, standard library only.

It serves the protocol of docs/node-protocol.md on 127.0.0.1, port
$SLUICE_NODE_PORT (9100 when unset):

  GET  /healthz  ready to execute
  POST /execute  one attempt: {"id", "type", "params", "item", "index", "context"}
                 -> {"output": ...} or {"error": {"message", "retryable"}}
  POST /cancel   {"id"}: stop that attempt if it still runs

The node greets someone. Params (checked by Sluice against the NodeType's
paramsSchema before a run): name (required), greeting (default "Hello"),
punctuation (default "!"), delaySeconds (pretend work, cancellable).

`--crash-on-execute` makes the process exit on the first /execute, to see
how Sluice reports a node server that crashes.
"""

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CRASH_ON_EXECUTE = "--crash-on-execute" in sys.argv[1:]
CANCELLED = set()
CANCELLED_LOCK = threading.Lock()


def greet(request):
    """Returns (output, None) or (None, (message, retryable))."""
    params = request.get("params") or {}
    name = str(params.get("name", "")).strip()
    if not name:
        return None, ("params.name is empty: set the name of the person to greet", False)
    delay = float(params.get("delaySeconds", 0) or 0)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        with CANCELLED_LOCK:
            if request.get("id") in CANCELLED:
                return None, ("cancelled", False)
        time.sleep(0.05)
    greeting = params.get("greeting", "Hello")
    punctuation = params.get("punctuation", "!")
    output = {"greeting": f"{greeting}, {name}{punctuation}"}
    if "index" in request:
        output["index"] = request["index"]
    return output, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_json(self):
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self):
        if self.path == "/healthz":
            self.answer(200, {"ok": True})
        else:
            self.answer(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        try:
            request = self.read_json()
        except ValueError as error:
            self.answer(400, {"error": {"message": f"the request is not JSON: {error}"}})
            return
        if self.path == "/cancel":
            with CANCELLED_LOCK:
                CANCELLED.add(request.get("id"))
            self.answer(200, {})
        elif self.path == "/execute":
            if CRASH_ON_EXECUTE:
                print("greeter: crashing on purpose (--crash-on-execute)", file=sys.stderr, flush=True)
                os._exit(3)
            output, error = greet(request)
            if error:
                message, retryable = error
                self.answer(200, {"error": {"message": message, "retryable": retryable}})
            else:
                self.answer(200, {"output": output})
        else:
            self.answer(404, {"error": {"message": f"no route {self.path}"}})

    def log_message(self, format, *args):
        print("greeter: " + format % args, file=sys.stderr, flush=True)


def main():
    port = int(os.environ.get("SLUICE_NODE_PORT", "9100"))
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"greeter: listening on 127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
