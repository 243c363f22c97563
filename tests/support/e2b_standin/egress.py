"""E2B's egress proxy, as a sandbox's HTTPS requests meet it.

On E2B, a sandbox's outgoing traffic passes a firewall that lets through only the hosts
in ``allowOut`` (when ``denyOut`` holds ``0.0.0.0/0``), and a proxy that applies the
network ``rules``: to add headers to an HTTPS request it terminates TLS and re-signs
with its own CA, which envd's ``/init`` appends to the sandbox's system bundle and
nowhere else (``infra packages/envd/internal/host/cacerts.go``). Node's bundled CA
store does not have it: Node fails ``UNABLE_TO_VERIFY_LEAF_SIGNATURE`` unless told
(``NODE_EXTRA_CA_CERTS``, ``--use-openssl-ca``).

Here: a test routes a host name to an upstream URL (``E2BStandIn.route``). Each sandbox
gets its own loopback address; its ``/etc/hosts`` sends the routed names there, where
this proxy listens on the stand-in's egress port. It re-signs TLS with the stand-in's
CA (a fresh leaf per server name), refuses hosts the sandbox's network does not allow
(403, where E2B drops the connection), applies the rules' headers, and forwards to the
upstream. Everything else the jail might reach is not filtered (it shares this host's
network).
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import shutil
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

logger = logging.getLogger(__name__)

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer"}
ALL_TRAFFIC = "0.0.0.0/0"


class EgressCA:
    """A CA, and a leaf certificate per server name (or IP address), made on first use:
    the egress proxy's, and the one that stands for the public CAs of E2B's endpoints."""

    def __init__(self, common_name: str = "E2B stand-in egress proxy CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.pem = self._cert.public_bytes(serialization.Encoding.PEM)
        self._dir = Path(tempfile.mkdtemp(prefix="e2b-egress-ca-"))
        self._contexts: dict[str, ssl.SSLContext] = {}

    def context_for(self, server_name: str) -> ssl.SSLContext:
        if server_name not in self._contexts:
            self.leaf(server_name)
        return self._contexts[server_name]

    def leaf(self, server_name: str) -> Path:
        """A PEM file with the leaf certificate for ``server_name`` and its key."""
        if server_name not in self._contexts:
            key = ec.generate_private_key(ec.SECP256R1())
            now = datetime.datetime.now(datetime.UTC)
            cert = (
                x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)]))
                .issuer_name(self._cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=7))
                .add_extension(x509.SubjectAlternativeName([san(server_name)]), critical=False)
                .add_extension(
                    x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                    critical=False,
                )
                .sign(self._key, hashes.SHA256())
            )
            chain = self._dir / f"{server_name}.pem"
            chain.write_bytes(
                cert.public_bytes(serialization.Encoding.PEM)
                + key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(chain)
            self._contexts[server_name] = context
        return self._dir / f"{server_name}.pem"

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def server_context(self, default_name: str) -> ssl.SSLContext:
        """A TLS server context that picks the leaf by SNI."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._dir / f"{default_name}.pem")

        def pick(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: Any) -> None:
            if name:
                sock.context = self.context_for(name)

        context.sni_callback = pick
        return context


def san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


class EgressProxy:
    """The ASGI application behind one sandbox's egress address."""

    def __init__(
        self,
        network: Callable[[], dict[str, Any] | None],
        routes: dict[str, str],
        seen: list[dict[str, Any]],
        trust: ssl.SSLContext,
    ) -> None:
        self._network = network
        self._routes = routes
        #: Every request that reached the proxy: host, path, the headers the upstream got.
        self._seen = seen
        self._client = httpx.AsyncClient(timeout=60, verify=trust)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        host = (request.headers.get("host") or "").split(":")[0]
        network = self._network() or {}
        allowed = network.get("allowOut") or []
        denied = network.get("denyOut") or []
        if (ALL_TRAFFIC in denied and host not in allowed) or host not in self._routes:
            logger.info("egress to %s blocked", host)
            await Response(f"egress to {host} is blocked", 403)(scope, receive, send)
            return
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        for rule in (network.get("rules") or {}).get(host, []):
            for name, value in ((rule.get("transform") or {}).get("headers") or {}).items():
                headers = {k: v for k, v in headers.items() if k.lower() != name.lower()}
                headers[name] = value
        seen = {k.lower(): v for k, v in headers.items()}
        self._seen.append({"host": host, "path": request.url.path, "headers": seen})
        upstream = self._routes[host].rstrip("/") + request.url.path
        if request.url.query:
            upstream += "?" + request.url.query
        answer = await self._client.request(
            request.method, upstream, headers=headers, content=await request.body()
        )
        out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
        out.pop("content-length", None)
        out.pop("content-encoding", None)
        await Response(answer.content, answer.status_code, headers=out)(scope, receive, send)

    async def close(self) -> None:
        await self._client.aclose()
