"""Loopback HTTP stand-ins for the instance metadata services (never 169.254.169.254)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Handler = Callable[[str, str, dict[str, str], bytes], tuple[int, Any]]


@contextmanager
def serve(handle: Handler) -> Iterator[tuple[str, list[tuple[str, str, dict[str, str], bytes]]]]:
    """An HTTP server on 127.0.0.1 calling `handle(method, path, headers, body)` -> (status,
    body: bytes, str or JSON-able); yields its base URL and the requests it saw."""
    seen: list[tuple[str, str, dict[str, str], bytes]] = []

    class H(BaseHTTPRequestHandler):
        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            seen.append((self.command, self.path, headers, body))
            status, out = handle(self.command, self.path, headers, body)
            data = out if isinstance(out, bytes) else (out.encode() if isinstance(out, str) else json.dumps(out).encode())
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
