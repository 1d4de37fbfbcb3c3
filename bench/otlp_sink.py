#!/usr/bin/env python3
"""A local OTLP/HTTP sink for measuring the cost of span export.

usage: otlp_sink.py PORT

Answers every POST with 200 and an empty body, as a collector that keeps up
would. It does not decode the protobuf: it counts requests, bytes and spans
(each span sagad sends has exactly one "saga.kind" attribute) and prints the
totals and its own CPU time every 5 s and at SIGINT/SIGTERM. docs/PERFORMANCE.md has the
measurement it was written for.
"""
import http.server
import os
import signal
import sys
import threading
import time

totals = {'requests': 0, 'bytes': 0, 'spans': 0}
lock = threading.Lock()


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def do_POST(self):
        n = int(self.headers.get('Content-Length', '0'))
        body = self.rfile.read(n)
        with lock:
            totals['requests'] += 1
            totals['bytes'] += len(body)
            totals['spans'] += body.count(b'saga.kind')
        self.send_response(200)
        self.send_header('Content-Type', 'application/x-protobuf')
        self.send_header('Content-Length', '0')
        self.end_headers()

    def log_message(self, *args):
        pass


def report():
    with lock:
        t = os.times()
        print('otlp_sink: %(requests)d requests, %(bytes)d bytes, %(spans)d spans' % totals,
              'cpu %.2f s' % (t.user + t.system), flush=True)


def main():
    port = int(sys.argv[1])
    srv = http.server.ThreadingHTTPServer(('127.0.0.1', port), Sink)

    def stop(*_):
        report()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def ticker():
        while True:
            time.sleep(5)
            report()

    threading.Thread(target=ticker, daemon=True).start()
    srv.serve_forever()


if __name__ == '__main__':
    main()
