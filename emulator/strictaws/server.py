"""One threaded HTTP server for the app, able to stop listening during a refuse-mode outage.

During such an outage the listening socket is closed (connections are refused), idle keep-alive
connections are closed, and a request arriving on a connection that stayed open is dropped without
an answer. After the outage the server listens on the same port again by itself.
"""

from __future__ import annotations

import socket
import threading
import time
import weakref
from typing import Any

from moto.moto_server.werkzeug_app import MotoRequestHandler
from werkzeug.serving import BaseWSGIServer, make_server

from .app import StrictApp


def _handler_class(app: StrictApp, connections: weakref.WeakSet[Any], log_requests: bool) -> type:
    class Handler(MotoRequestHandler):
        busy = False
        # The status line and headers go out in one write and the body in another; with Nagle's
        # algorithm on, the body then waits for the client's delayed ACK (up to 40 ms per answer).
        disable_nagle_algorithm = True

        def setup(self) -> None:
            super().setup()
            connections.add(self)

        def finish(self) -> None:
            connections.discard(self)
            super().finish()

        def parse_request(self) -> bool:
            if not super().parse_request():
                return False
            if app.outage.active("refuse"):
                self.close_connection = True
                return False
            self.busy = True
            return True

        def handle_one_request(self) -> None:
            try:
                super().handle_one_request()
            finally:
                self.busy = False

        def log_request(self, *args: Any, **kwargs: Any) -> None:
            if log_requests:
                super().log_request(*args, **kwargs)

    return Handler


class StrictServer:
    def __init__(self, app: StrictApp, host: str, port: int, log_requests: bool = False):
        self.app = app
        self.host = host
        self.port = port
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._handler = _handler_class(app, self._connections, log_requests)
        self._httpd: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self._httpd = make_server(
                    self.host, self.port, self.app, threaded=True, request_handler=self._handler
                )
                break
            except OSError:
                # Rebinding after an outage can briefly find the port still held.
                if self.port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.port = self._httpd.socket.getsockname()[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        for handler in list(self._connections):
            if handler.busy:
                handler.close_connection = True
            else:
                try:
                    handler.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def run(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, going dark during refuse-mode outages."""
        outage = self.app.outage
        while not stop.is_set():
            if not outage.refuse_started.wait(0.1):
                continue
            outage.refuse_started.clear()
            self.stop()
            while not stop.is_set() and outage.active("refuse"):
                stop.wait(min(0.05, max(outage.remaining(), 0.001)))
            if not stop.is_set():
                self.start()
        self.stop()
