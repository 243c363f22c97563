"""Kept-alive HTTP(S) connections to one endpoint, for the small clients on the request
path (``awsapi``: DynamoDB, Secrets Manager and Lambda; ``e2b.control``: E2B's REST API),
on the standard library's http.client: no client library to import at cold start. Every
pool shares one TLS context per CA bundle: loading the system's certificates costs ~20 ms
of CPU, and a cold sandbox_get talks to three endpoints.

Thread-safe: a request takes an idle connection (or opens one) and gives it back when its
answer has been read whole; a connection that failed mid-request is closed, never reused."""

from __future__ import annotations

import http.client
import os
import select
import socket
import ssl
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_IDLE_CONNECTIONS = 32
#: What a failed exchange raises: refused, reset, timed out, TLS, malformed answer.
TRANSPORT_ERRORS = (OSError, http.client.HTTPException)


@dataclass(frozen=True)
class Reply:
    status: int
    #: Header names in lowercase.
    headers: dict[str, str]
    body: bytes


class ConnectionPool:
    def __init__(
        self,
        endpoint: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        ca_bundle_variable: str | None = None,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint!r}")
        self.endpoint = endpoint.rstrip("/")
        #: The path every request's path is appended to ("" or "/prefix").
        self.base_path = parts.path.rstrip("/")
        self._https = parts.scheme == "https"
        self._address = (parts.hostname, parts.port or (443 if self._https else 80))
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._ca_bundle = os.environ.get(ca_bundle_variable) if ca_bundle_variable else None
        self._tls: ssl.SSLContext | None = None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False
        # Sockets are closed when the pool is dropped without close() (tests make many).
        weakref.finalize(self, _close_all, self._idle, self._lock)

    def exchange(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes | None = None
    ) -> Reply:
        """One request and its whole answer; ``TRANSPORT_ERRORS`` when there is none."""
        connection = self._checkout()
        try:
            connection.request(method, self.base_path + path, body=body, headers=dict(headers))
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()  # its state is unknown: never reuse it
            raise
        self._checkin(connection)
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)

    def _checkout(self) -> http.client.HTTPConnection:
        """An idle kept-alive connection, or a new one."""
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None and connection.sock is not None and _dropped(connection.sock):
            connection.close()  # the server closed it while idle (a frozen Lambda, for one)
        if connection is None:
            host, port = self._address
            if self._https:
                if self._tls is None:
                    self._tls = tls_context(self._ca_bundle)
                connection = http.client.HTTPSConnection(
                    host, port, timeout=self._connect_timeout, context=self._tls
                )
            else:
                connection = http.client.HTTPConnection(host, port, timeout=self._connect_timeout)
        if connection.sock is None:
            connection.connect()  # within connect_timeout; then reads get read_timeout
            sock: socket.socket = connection.sock  # type: ignore[assignment]
            sock.settimeout(self._read_timeout)
        return connection

    def _checkin(self, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        """Close the idle connections; requests under way close theirs when done."""
        with self._lock:
            self._closed = True
        _close_all(self._idle, self._lock)


#: TLS contexts by (CA bundle, SSL_CERT_FILE, SSL_CERT_DIR): what they trust.
_TLS_CONTEXTS: dict[tuple[str | None, str | None, str | None], ssl.SSLContext] = {}


def tls_context(cafile: str | None) -> ssl.SSLContext:
    """The verifying TLS context for ``cafile`` (None: the system's certificates, found
    through SSL_CERT_FILE and SSL_CERT_DIR as OpenSSL finds them), made once per process
    for what it trusts; an SSLContext may be shared by threads (two threads racing here
    both get a good one)."""
    trust = (cafile, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    context = _TLS_CONTEXTS.get(trust)
    if context is None:
        context = _TLS_CONTEXTS[trust] = ssl.create_default_context(cafile=cafile)
    return context


def _dropped(sock: socket.socket) -> bool:
    """An idle connection with something to read has been closed by its server (or holds
    an answer nobody asked for): either way it cannot carry the next request."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _close_all(connections: list[http.client.HTTPConnection], lock: threading.Lock) -> None:
    with lock:
        idle, connections[:] = list(connections), []
    for connection in idle:
        connection.close()
