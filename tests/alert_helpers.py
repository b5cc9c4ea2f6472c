"""A real webhook receiver on 127.0.0.1 for the alert tests, and dataset helpers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    # Per request, in order: an HTTP status to answer, or "hang" to answer after `hang_s`.
    script: list[int | str] = field(default_factory=list)
    hang_s: float = 5.0
    requests: int = 0


@contextmanager
def webhook_receiver(*script: int | str) -> Iterator[Receiver]:
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.requests += 1
            action = receiver.script.pop(0) if receiver.script else 200
            if action == "hang":
                time.sleep(receiver.hang_s)
                action = 200
            if action == 200:
                receiver.bodies.append(json.loads(body))
            self.send_response(int(action))
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    receiver.script = list(script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
