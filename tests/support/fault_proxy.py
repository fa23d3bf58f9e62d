"""A loopback HTTP proxy that injects endpoint failures in front of a real OpenAI-compatible server.

The mode can be switched while it runs, so one test can break the endpoint, watch the client fail
the right way, then switch back and watch it recover. Server-sent events pass through chunk by
chunk, so streaming behaves as it does without the proxy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import socket
import struct
import sys
import threading
from dataclasses import dataclass
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from tests.support.processes import Service

MAX_BODY_BYTES = 1 << 20
MAX_CONCURRENT_REQUESTS = 16
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}


class FaultMode(StrEnum):
    PASS = "pass"  # forward everything unchanged
    REFUSE = "refuse"  # reset every connection without an answer
    DELAY = "delay"  # hold the request for delay_s, then drop it (the client should time out first)
    HTTP_500 = "http_500"
    HTTP_429 = "http_429"  # for the first ``times`` requests (all when None), then forward
    CUT_STREAM = "cut_stream"  # forward the first ``cut_after_events`` events (or half a body), then drop
    MALFORMED_JSON = "malformed_json"  # 200 with JSON (or an SSE event) that does not parse


@dataclass(frozen=True)
class _Fault:
    mode: FaultMode
    delay_s: float
    times: int | None
    cut_after_events: int


class FaultProxy(Service):
    """Start with ``with FaultProxy(upstream_base_url) as proxy:``; point clients at ``proxy.base_url``."""

    def __init__(self, upstream_base_url: str, upstream_timeout_s: float = 120.0) -> None:
        parts = urlsplit(upstream_base_url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the fault proxy only fronts loopback servers")
        self.upstream_host = parts.hostname
        self.upstream_port = parts.port or 80
        self.upstream_path = parts.path.rstrip("/")
        self.upstream_timeout_s = upstream_timeout_s
        self._lock = threading.Lock()
        self._fault = _Fault(FaultMode.PASS, 0.0, None, 4)
        self._faults_served = 0
        self.requests_seen = 0
        self.requests: list[tuple[str, str, bytes]] = []  # method, path, body of every request received
        self.unexpected_errors: list[str] = []
        self.stopping = threading.Event()
        self.slots = threading.BoundedSemaphore(MAX_CONCURRENT_REQUESTS)
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler, self)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.upstream_path}"

    @property
    def mode(self) -> FaultMode:
        return self._fault.mode

    def set_mode(
        self,
        mode: FaultMode,
        *,
        delay_s: float = 5.0,
        times: int | None = None,
        cut_after_events: int = 4,
    ) -> None:
        with self._lock:
            self._fault = _Fault(FaultMode(mode), delay_s, times, cut_after_events)
            self._faults_served = 0

    @property
    def faults_served(self) -> int:
        """How many requests got the current fault since the mode was set."""
        return self._faults_served

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def take(self) -> _Fault:
        """The fault for one incoming request; counts it against ``times``."""
        with self._lock:
            self.requests_seen += 1
            fault = self._fault
            if fault.mode is FaultMode.PASS:
                return fault
            if fault.times is not None and self._faults_served >= fault.times:
                return dataclasses.replace(fault, mode=FaultMode.PASS)
            self._faults_served += 1
            return fault


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN: the client sees 'connection reset', as from a dead server."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], proxy: FaultProxy):
        self.proxy = proxy
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up on kept-alive connections and on faults by design; anything else is a
        # bug in the proxy, kept for the test to assert on.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return
        self.proxy.unexpected_errors.append(repr(error))
        super().handle_error(request, client_address)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.proxy.mode is FaultMode.REFUSE:
            _reset(request)
            return False
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        # Bounded: a runaway client cannot spawn threads without limit.
        if not self.proxy.slots.acquire(timeout=10):
            _reset(request)
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.proxy.slots.release()


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read results, not logs
        return

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._reply_json(413, {"error": {"message": "request too large"}})
            return
        body = self.rfile.read(length) if length else b""
        with proxy._lock:
            proxy.requests.append((self.command, self.path, body))
        wants_stream = _wants_stream(body)
        fault = proxy.take()
        mode = fault.mode
        if mode is FaultMode.REFUSE:  # a kept-alive connection opened before the switch
            _reset(self.connection)
            self.close_connection = True
        elif mode is FaultMode.DELAY:
            proxy.stopping.wait(fault.delay_s)
            self.close_connection = True
        elif mode is FaultMode.HTTP_500:
            self._reply_json(500, {"error": {"message": "injected server error", "type": "server_error"}})
        elif mode is FaultMode.HTTP_429:
            self._reply_json(
                429,
                {"error": {"message": "injected rate limit", "type": "rate_limit_exceeded"}},
                extra_headers={"Retry-After": "1"},
            )
        elif mode is FaultMode.MALFORMED_JSON:
            self._reply_malformed(wants_stream)
        else:
            self._forward(body, cut_after_events=fault.cut_after_events if mode is FaultMode.CUT_STREAM else None)

    def _reply_json(self, status: int, payload: dict[str, Any], extra_headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _reply_malformed(self, wants_stream: bool) -> None:
        broken = b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess'
        if wants_stream:
            data = b"data: " + broken + b"\n\n"
            content_type = "text/event-stream"
        else:
            data = broken
            content_type = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _forward(self, body: bytes, cut_after_events: int | None) -> None:
        proxy = self.server.proxy
        upstream = http.client.HTTPConnection(
            proxy.upstream_host, proxy.upstream_port, timeout=proxy.upstream_timeout_s
        )
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Accept-Encoding"] = "identity"
            if body:
                headers["Content-Length"] = str(len(body))
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            streamed = response.getheader("Transfer-Encoding", "").lower() == "chunked" or (
                "text/event-stream" in response.getheader("Content-Type", "")
            )
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            if streamed:
                self._relay_chunks(response, cut_after_events)
            else:
                self._relay_whole(response, cut=cut_after_events is not None)
        except (OSError, http.client.HTTPException):
            self.close_connection = True
        finally:
            upstream.close()

    def _relay_whole(self, response: http.client.HTTPResponse, cut: bool) -> None:
        data = response.read()
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if cut:  # announce the full length, send half, hang up
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            _reset(self.connection)
            self.close_connection = True
            return
        self.wfile.write(data)

    def _relay_chunks(self, response: http.client.HTTPResponse, cut_after_events: int | None) -> None:
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events_sent = 0
        pending = b""
        while True:
            piece = response.read1(8192)
            if not piece:
                break
            if cut_after_events is None:
                self._write_chunk(piece)
                continue
            pending += piece
            while b"\n\n" in pending and events_sent < cut_after_events:
                event, pending = pending.split(b"\n\n", 1)
                self._write_chunk(event + b"\n\n")
                events_sent += 1
            if events_sent >= cut_after_events:
                # No terminating chunk: the client sees the body end in the middle.
                _reset(self.connection)
                self.close_connection = True
                return
        if pending:
            self._write_chunk(pending)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _wants_stream(body: bytes) -> bool:
    try:
        payload = json.loads(body) if body else {}
    except ValueError:
        return False
    return isinstance(payload, dict) and bool(payload.get("stream"))
