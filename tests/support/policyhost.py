"""A scriptable HTTPS policy host on loopback port 443 with trustme certificates.

Each site (by SNI / Host) says what to serve and how: status, content type, body,
extra headers, redirects, trickling, hanging, or which certificate to present. The
server logs the SNI of each handshake and every request it reads.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import ssl
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

POLICY_HOST_IP = "127.8.4.61"  # every mta-sts.* name of the tests resolves here
# OpenSSL fixes the protocol version before the SNI callback can switch contexts, so each
# TLS version restriction gets its own listener address (Site.tls picks it).
TLS_VERSION_IPS = {"1.2": "127.8.4.62", "1.3": "127.8.4.63", "1.1": "127.8.4.64"}
_EC = trustme.KeyType.ECDSA  # fast to issue: the benchmark needs thousands of certificates


@dataclass
class Site:
    body: bytes = b""
    status: int = 200
    content_type: Optional[str] = "text/plain"
    headers: Dict[str, str] = field(default_factory=dict)
    cert: str = "good"  # good | wrong-name | expired | not-yet-valid | untrusted | wildcard
    trickle: float = 0.0  # seconds between bytes of the body
    hang: bool = False  # complete the handshake, then never answer
    chunked_size: int = 0  # stream this many bytes without Content-Length
    tls: str = ""  # "1.2": at most TLS 1.2; "1.3": only TLS 1.3; "1.1": TLS 1.0/1.1 only


@dataclass
class Request:
    sni: Optional[str]
    method: str
    path: str
    headers: Dict[str, str]


class PolicyHost:
    def __init__(self, ip: str = POLICY_HOST_IP, port: int = 443) -> None:
        self.ca = trustme.CA(key_type=_EC)
        self.other_ca = trustme.CA(key_type=_EC)  # not trusted by the daemon
        self.sites: Dict[str, Site] = {}
        self.requests: List[Request] = []
        self.handshakes: List[Optional[str]] = []
        self.delay = 0.0  # seconds before each response: a simulated network (bench/run.py)
        self._contexts: Dict[Tuple[str, str], ssl.SSLContext] = {}
        self._fallback = self._context_for("fallback.invalid", "good")
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self.ip, self.port = ip, port
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error:
            raise RuntimeError(f"policy host failed to start on {ip}:{port}: {self._error}")

    # -- certificates -----------------------------------------------------------------

    def _context_for(self, host: str, kind: str) -> ssl.SSLContext:
        key = (host, kind)
        if key in self._contexts:
            return self._contexts[key]
        now = datetime.datetime.now(datetime.timezone.utc)
        if kind == "good":
            cert = self.ca.issue_cert(host, key_type=_EC)
        elif kind == "wildcard":
            cert = self.ca.issue_cert("*." + host.split(".", 1)[1], key_type=_EC)
        elif kind == "wrong-name":
            cert = self.ca.issue_cert("other.example", key_type=_EC)
        elif kind == "expired":
            return self._custom(key, host, now - datetime.timedelta(days=30), now - datetime.timedelta(days=1))
        elif kind == "not-yet-valid":
            return self._custom(key, host, now + datetime.timedelta(days=1), now + datetime.timedelta(days=30))
        elif kind == "cn-only":
            return self._custom(
                key, host, now - datetime.timedelta(days=1), now + datetime.timedelta(days=30), san=False
            )
        elif kind == "untrusted":
            cert = self.other_ca.issue_cert(host, key_type=_EC)
        else:
            raise ValueError(kind)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(ctx)
        self._contexts[key] = ctx
        return ctx

    def _custom(self, key, host, not_before, not_after, san=True) -> ssl.SSLContext:
        """A leaf signed by the trusted CA with chosen validity, or with only a subject CN."""
        ca_key = serialization.load_pem_private_key(self.ca.private_key_pem.bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert_pem.bytes())
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_cert.subject)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        leaf = builder.sign(ca_key, hashes.SHA256())
        pem = leaf.public_bytes(serialization.Encoding.PEM)
        key_pem = leaf_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as f:
            f.write(pem + key_pem)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(f.name)
        os.unlink(f.name)
        self._contexts[key] = ctx
        return ctx

    def _sni(self, sslobj, server_name, _ctx):
        self.handshakes.append(server_name)
        site = self.sites.get(server_name or "")
        if site is not None:
            sslobj.context = self._context_for(server_name, site.cert)

    # -- serving --------------------------------------------------------------------

    def ip_for(self, tls: str) -> str:
        return TLS_VERSION_IPS[tls] if tls else self.ip

    def _listener_context(self, tls: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ca.issue_cert("fallback.invalid", key_type=_EC).configure_cert(ctx)
        ctx.sni_callback = self._sni
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
            if tls == "1.3":
                ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            elif tls == "1.2":
                ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            elif tls == "1.1":
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
                ctx.minimum_version = ssl.TLSVersion.TLSv1
                ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        return ctx

    def _run(self) -> None:
        self._error = None
        asyncio.set_event_loop(self._loop)
        self._fallback.sni_callback = self._sni
        self._extra = []
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, self.ip, self.port, ssl=self._fallback, reuse_address=True)
            )
            for tls, ip in TLS_VERSION_IPS.items():
                self._extra.append(
                    self._loop.run_until_complete(
                        asyncio.start_server(
                            self._handle, ip, self.port, ssl=self._listener_context(tls), reuse_address=True
                        )
                    )
                )
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop():
            for extra in self._extra:
                extra.close()
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._server.wait_closed()

        if not self._error:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def paths(self, host: str) -> List[str]:
        return [r.path for r in self.requests if r.headers.get("host", "").split(":")[0] == host]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sslobj = writer.get_extra_info("ssl_object")
            sni = sslobj.server_hostname if sslobj else None
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            self.requests.append(Request(sni, method, path, headers))
            host = headers.get("host", "").split(":")[0]
            site = self.sites.get(host)
            if site is None:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if site.hang:
                await asyncio.sleep(3600)
                return
            if self.delay:
                await asyncio.sleep(self.delay)  # a simulated network (bench/run.py)
            out = [f"HTTP/1.1 {site.status} X"]
            if site.content_type is not None:
                out.append(f"Content-Type: {site.content_type}")
            for k, v in site.headers.items():
                out.append(f"{k}: {v}")
            body = b"" if site.status in (204, 304) else site.body  # no body allowed (RFC 9110)
            if not site.chunked_size and site.status not in (204, 304):
                out.append(f"Content-Length: {len(body)}")
            out.append("Connection: close")
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode())
            if site.chunked_size:
                block = b"x: " + b"a" * 16381 + b"\n"
                sent = 0
                while sent < site.chunked_size:
                    writer.write(block)
                    await writer.drain()
                    sent += len(block)
            elif site.trickle:
                for i in range(len(body)):
                    writer.write(body[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(site.trickle)
            else:
                writer.write(body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass
