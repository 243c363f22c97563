"""A TCP proxy in front of a real server that breaks chosen connections the way networks do:
it drops a response after the server has answered, cuts a stream part-way, or answers a path
itself (as API Gateway does for a route it does not have). For the clients' retry and
resume tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self

#: Given the response bytes a connection has forwarded so far: True to close it instead of
#: forwarding the next chunk (``lambda _: True`` drops the whole response).
Cut = Callable[[bytes], bool]
#: Given a request's first bytes: a whole HTTP response to answer instead, or None.
Intercept = Callable[[bytes], bytes | None]


class FlakyProxy:
    def __init__(
        self,
        upstream_port: int,
        *,
        cuts: dict[int, Cut] | None = None,
        intercept: Intercept | None = None,
    ) -> None:
        self._upstream = ("127.0.0.1", upstream_port)
        self._cuts = cuts or {}
        self._intercept = intercept
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        #: The first bytes of every request that reached the proxy, in order.
        self.requests: list[bytes] = []
        self.cut_connections: list[int] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def __enter__(self) -> Self:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        index = 0
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client, index), daemon=True)
            thread.start()
            index += 1

    def _serve(self, client: socket.socket, index: int) -> None:
        cut = self._cuts.get(index)
        with client, socket.create_connection(self._upstream) as upstream:
            first = client.recv(65536)
            if not first:
                return
            with self._lock:
                self.requests.append(first)
            canned = self._intercept(first) if self._intercept else None
            if canned is not None:
                client.sendall(canned)
                return
            upstream.sendall(first)
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
            seen = b""
            while True:
                try:
                    chunk = upstream.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                if cut is not None and cut(seen):
                    with self._lock:
                        self.cut_connections.append(index)
                    client.shutdown(socket.SHUT_RDWR)
                    return
                try:
                    client.sendall(chunk)
                except OSError:
                    return
                seen += chunk


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    """Client to server, until either side closes."""
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass


def http_response(status: int, reason: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
