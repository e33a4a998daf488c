#!/usr/bin/env python3
"""Slipway's example app: shows its release and environment on / and answers /health.

Its environment can make it misbehave, for trying out rollbacks:
  EXAMPLE_FAIL_HEALTH=1       /health answers 500
  EXAMPLE_EXIT_AT_START=1     exits at once with an error
  EXAMPLE_START_DELAY_MS=N    listens only after N milliseconds
  EXAMPLE_HEALTH_FILE=PATH    /health answers 500 while PATH does not exist
  EXAMPLE_SAY=TEXT            prints "says: TEXT" at start (to see output masked for viewers)
  EXAMPLE_RAW_OUTPUT=1        also logs bytes that are not UTF-8 for each request
Only the Python standard library is used.
"""
import html
import http.server
import json
import os
import socketserver
import sys
import time

SHOWN_PREFIXES = ("SLIPWAY_", "EXAMPLE_", "GREETING", "PORT")


def main():
    say = os.environ.get("EXAMPLE_SAY")
    if say:
        print(f"says: {say}", flush=True)
    if os.environ.get("EXAMPLE_EXIT_AT_START") == "1":
        print("EXAMPLE_EXIT_AT_START=1: exiting with an error on purpose", file=sys.stderr, flush=True)
        sys.exit(3)
    delay_ms = int(os.environ.get("EXAMPLE_START_DELAY_MS", "0") or "0")
    if delay_ms > 0:
        print(f"waiting {delay_ms} ms before listening", flush=True)
        time.sleep(delay_ms / 1000)
    port = int(os.environ.get("PORT", "8000"))
    release = os.environ.get("SLIPWAY_RELEASE", "unknown")
    fail_health = os.environ.get("EXAMPLE_FAIL_HEALTH") == "1"
    health_file = os.environ.get("EXAMPLE_HEALTH_FILE")
    raw_output = os.environ.get("EXAMPLE_RAW_OUTPUT") == "1"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def send(self, status, body, content_type):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_HEAD(self):
            self.do_GET()

        def do_GET(self):
            if self.path == "/health":
                if fail_health:
                    self.send(500, "unhealthy on purpose (EXAMPLE_FAIL_HEALTH=1)\n", "text/plain")
                elif health_file and not os.path.exists(health_file):
                    self.send(500, f"unhealthy: {health_file} does not exist\n", "text/plain")
                else:
                    self.send(200, "ok\n", "text/plain")
            elif self.path == "/release":
                self.send(200, release + "\n", "text/plain")
            elif self.path == "/env.json":
                env = {k: v for k, v in os.environ.items() if k.startswith(SHOWN_PREFIXES)}
                self.send(200, json.dumps(env, sort_keys=True) + "\n", "application/json")
            elif self.path == "/":
                rows = "".join(
                    f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                    for k, v in sorted(os.environ.items())
                    if k.startswith(SHOWN_PREFIXES)
                )
                page = (
                    "<!doctype html><meta charset=utf-8><title>hello from Slipway</title>"
                    f"<h1>hello from release {html.escape(release)}</h1>"
                    f"<table>{rows}</table>\n"
                )
                self.send(200, page, "text/html; charset=utf-8")
            else:
                self.send(404, "not found\n", "text/plain")

        def log_message(self, fmt, *args):
            sys.stdout.write("%s %s\n" % (self.address_string(), fmt % args))
            sys.stdout.flush()
            if raw_output:
                sys.stdout.buffer.write(b"raw \xff\xfe bytes\n")
                sys.stdout.buffer.flush()

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", port), Handler)
    print(f"listening on 127.0.0.1:{port} as release {release}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    main()
