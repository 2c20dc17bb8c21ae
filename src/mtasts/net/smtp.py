"""STARTTLS probe of an MX host, as a sending MTA would see it (RFC 8461 §4.2, §7.1)."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from mtasts.net.dns import DnsClient

SMTP_PORT = 25


@dataclass(frozen=True)
class StarttlsResult:
    ok: bool
    detail: str


async def probe_starttls(
    dns_client: DnsClient, host: str, context: ssl.SSLContext, timeout: float = 15.0, port: int = SMTP_PORT
) -> StarttlsResult:
    """Connect, EHLO, STARTTLS, and verify the certificate against *host* (SNI = host)."""
    try:
        return await asyncio.wait_for(_probe(dns_client, host, context, port), timeout)
    except asyncio.TimeoutError:
        return StarttlsResult(False, f"no answer within {timeout:g} s")


async def _probe(dns_client: DnsClient, host: str, context: ssl.SSLContext, port: int) -> StarttlsResult:
    try:
        addresses = await dns_client.addresses(host)
    except OSError as exc:
        return StarttlsResult(False, str(exc))
    _family, address = addresses[0]
    try:
        reader, writer = await asyncio.open_connection(address, port)
    except OSError as exc:
        return StarttlsResult(False, f"cannot connect to {address}:{port}: {exc.strerror or exc}")
    try:
        code, _ = await _reply(reader)
        if code != 220:
            return StarttlsResult(False, f"greeting {code}")
        writer.write(b"EHLO mtasts-check.invalid\r\n")
        code, lines = await _reply(reader)
        if code != 250:
            return StarttlsResult(False, f"EHLO answered {code}")
        if not any(line[4:].strip().upper() == b"STARTTLS" for line in lines):
            return StarttlsResult(False, "STARTTLS not offered")
        writer.write(b"STARTTLS\r\n")
        code, _ = await _reply(reader)
        if code != 220:
            return StarttlsResult(False, f"STARTTLS answered {code}")
        loop = asyncio.get_running_loop()
        transport = writer.transport
        if transport is None:
            return StarttlsResult(False, "the connection closed before STARTTLS")
        try:
            tls = await loop.start_tls(transport, transport.get_protocol(), context, server_hostname=host)
        except ssl.SSLCertVerificationError as exc:
            return StarttlsResult(False, f"certificate: {exc.verify_message}")
        except (ssl.SSLError, OSError) as exc:
            return StarttlsResult(False, f"TLS handshake failed: {exc}")
        if tls is None:
            return StarttlsResult(False, "the connection closed during the TLS handshake")
        version = tls.get_extra_info("ssl_object").version()
        tls.close()
        return StarttlsResult(True, f"{version}, certificate valid for {host}")
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return StarttlsResult(False, f"SMTP conversation failed: {exc}")
    finally:
        writer.transport.abort()


async def _reply(reader: asyncio.StreamReader):
    lines = []
    while True:
        line = await reader.readline()
        if len(line) < 4 or not line[:3].isdigit():
            raise ValueError(f"malformed SMTP reply {line[:60]!r}")
        lines.append(line.rstrip(b"\r\n"))
        if line[3:4] != b"-":
            return int(line[:3]), lines
