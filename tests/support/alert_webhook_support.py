"""A local webhook (http.server in a thread) that records the alerts posted to it."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Webhook:
    """What the local webhook received, and the statuses it answers with.

    Attributes:
        url: Its URL (with a secret-looking path, as Slack's).
        posts: JSON bodies of the requests it answered 2xx.
        requests: Every request's body, whatever the answer.
        statuses: Statuses to answer the next requests with (then 200).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.posts: list[dict] = []
        self.requests: list[dict] = []
        self.statuses: list[int] = []
        self.lock = threading.Lock()

    def texts(self) -> list[str]:
        """The ``text`` of each accepted post."""
        with self.lock:
            return [post["text"] for post in self.posts]


@contextlib.contextmanager
def local_webhook() -> Iterator[Webhook]:
    """Serve a webhook on 127.0.0.1 (a free port) for the block."""
    hook: Webhook

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with hook.lock:
                hook.requests.append(body)
                status = hook.statuses.pop(0) if hook.statuses else 200
                if status < 300:
                    hook.posts.append(body)
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook = Webhook(f"http://127.0.0.1:{server.server_port}/services/T0/B0/s3cr3tT0ken")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
