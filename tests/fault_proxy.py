"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the loopback S3 server: the flaky object store.

Each request is, with probability `share`, answered with 503 SlowDown, 500 InternalError, or a reset
connection (the three in turn), else forwarded to the server unchanged. `cut_next_upload(name)` makes the
next PUT whose path contains `name` fail halfway through its body (the connection is reset after half of it
is read), as a network cut during a checkpoint upload would. Counts what it did in `stats`. Bodies sent with a
Content-Length or chunked (as pyarrow's S3 client, under Ray Data and Ray Train, sends them) are both handled.
"""
import http.client
import random
import socket
import socketserver
import struct
import threading
from urllib.parse import urlsplit

FAULTS = ("503", "500", "reset")
_BODIES = {"503": (503, "SlowDown", "Please reduce your request rate."),
           "500": (500, "InternalError", "We encountered an internal error. Please try again.")}


class FaultProxy:
    def __init__(self, upstream: str, share: float = 0.0, seed: int = 0):
        target = urlsplit(upstream)
        self.upstream = (target.hostname, target.port)
        self.share, self.rng, self.lock = share, random.Random(seed), threading.Lock()
        self.stats = {"requests": 0, "forwarded": 0, **dict.fromkeys(FAULTS, 0), "cut": 0}
        self._turn, self._cut = 0, None
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                proxy._handle(self)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fault proxy")

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def cut_next_upload(self, name: str) -> None:
        self._cut = name

    def _fault(self, method: str, path: str) -> str | None:
        with self.lock:
            self.stats["requests"] += 1
            if method == "PUT" and self._cut and self._cut in path:
                self._cut = None
                self.stats["cut"] += 1
                return "cut"
            if self.rng.random() < self.share:
                fault = FAULTS[self._turn % len(FAULTS)]
                self._turn += 1
                self.stats[fault] += 1
                return fault
            self.stats["forwarded"] += 1
            return None

    def _handle(self, handler) -> None:
        """One request per connection (answers say `Connection: close`): read it, then fail or forward it."""
        line = handler.rfile.readline().decode("latin-1").strip()
        if not line:
            return
        method, path, _ = line.split(" ", 2)
        headers = []
        while (header := handler.rfile.readline().decode("latin-1")) not in ("\r\n", "\n", ""):
            name, _, value = header.partition(":")
            headers.append((name.strip(), value.strip()))
        length = int(next((v for k, v in headers if k.lower() == "content-length"), 0))
        if any(k.lower() == "expect" and v.lower() == "100-continue" for k, v in headers):
            handler.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")     # the client sends the body only then
            headers = [(k, v) for k, v in headers if k.lower() != "expect"]
        chunked = any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers)
        fault = self._fault(method, path)
        if fault == "cut":
            handler.rfile.read(length // 2) if not chunked else handler.rfile.readline()
            return self._reset(handler)
        body = self._chunked_body(handler.rfile) if chunked else handler.rfile.read(length) if length else b""
        if fault == "reset":
            return self._reset(handler)
        if fault:
            status, code, message = _BODIES[fault]
            payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message>'
                       f'</Error>').encode()
            handler.wfile.write(f"HTTP/1.1 {status} {code}\r\nContent-Type: application/xml\r\nContent-Length: "
                                f"{len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload)
            return
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            upstream.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() != "connection":
                    upstream.putheader(name, value)
            upstream.putheader("Connection", "close")
            upstream.endheaders(body)
            response = upstream.getresponse()
            payload = response.read()
            out = [f"HTTP/1.1 {response.status} {response.reason}"]
            dropped = ("connection", "transfer-encoding") + (() if method == "HEAD" else ("content-length",))
            out += [f"{k}: {v}" for k, v in response.getheaders() if k.lower() not in dropped]
            out += ([] if method == "HEAD" else [f"Content-Length: {len(payload)}"]) + ["Connection: close", "", ""]
            handler.wfile.write("\r\n".join(out).encode("latin-1") + (payload if method != "HEAD" else b""))
        finally:
            upstream.close()

    @staticmethod
    def _chunked_body(rfile) -> bytes:
        """A `Transfer-Encoding: chunked` body (pyarrow's S3 client uploads so), read whole and kept as sent:
        it is forwarded with the same header, unchanged."""
        raw = []
        while True:
            size_line = rfile.readline()
            raw.append(size_line)
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:                         # trailers, then the blank line that ends the body
                    trailer = rfile.readline()
                    raw.append(trailer)
                    if trailer in (b"\r\n", b"\n", b""):
                        return b"".join(raw)
            raw.append(rfile.read(size + 2))        # the chunk and its CRLF

    @staticmethod
    def _reset(handler) -> None:
        """Close with a TCP reset (SO_LINGER 0), as a dropped connection looks to the client."""
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()
