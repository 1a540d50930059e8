"""A real local webhook for the daemon's tests: it records what it accepts and answers what the
test tells it to (200, a 5xx outage, a refusal)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

__all__ = ["WebhookServer", "webhook"]


class WebhookServer:
    """An HTTP server on a free loopback port; set ``status`` (and ``reply``) to change answers."""

    def __init__(self) -> None:
        self.status = 200
        self.reply = b""
        self.accepted: list[dict[str, Any]] = []  # events of the POSTs answered 2xx
        self.refused = 0  # POSTs answered otherwise
        self.received = 0  # POSTs that arrived
        self.delay = 0.0  # seconds to wait before answering (a webhook that hangs)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.received += 1
                if server.delay:
                    time.sleep(server.delay)
                status, reply = server.status, server.reply
                if 200 <= status < 300:
                    server.accepted.extend(json.loads(body))
                else:
                    server.refused += 1
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def do_OPTIONS(self) -> None:
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True  # a hanging answer does not hold up close()
        self._thread = threading.Thread(target=self._httpd.serve_forever)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/events"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


@pytest.fixture
def webhook() -> Iterator[WebhookServer]:
    """A webhook answering 200 until the test says otherwise."""
    server = WebhookServer()
    yield server
    server.close()
