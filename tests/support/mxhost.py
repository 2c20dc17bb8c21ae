"""Receiving MX hosts for the tests: SMTP on port 25 with STARTTLS and trustme certificates.

``MX_IP`` offers STARTTLS and presents, per SNI, a certificate for that name, unless the
name is in ``wrong_name`` (then one for another host). ``NO_TLS_IP`` offers no STARTTLS.
The conversation ends after the handshake: enough for a certificate check.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from typing import Set

import trustme

MX_IP = "127.8.7.1"
NO_TLS_IP = "127.8.7.2"


class MxHosts:
    def __init__(self, ca: trustme.CA) -> None:
        self.ca = ca
        self.wrong_name: Set[str] = set()
        self._contexts = {}
        self._loop = asyncio.new_event_loop()
        self._base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("fallback.invalid", key_type=trustme.KeyType.ECDSA).configure_cert(self._base)
        self._base.sni_callback = self._sni
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        ready.wait(10)

    def _context(self, name: str) -> ssl.SSLContext:
        key = "other.example" if name in self.wrong_name else name
        if key not in self._contexts:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ca.issue_cert(key, key_type=trustme.KeyType.ECDSA).configure_cert(ctx)
            self._contexts[key] = ctx
        return self._contexts[key]

    def _sni(self, sslobj, name, _ctx):
        if name:
            sslobj.context = self._context(name)

    def _run(self, ready) -> None:
        asyncio.set_event_loop(self._loop)
        self._servers = [
            self._loop.run_until_complete(asyncio.start_server(self._smtp_tls, MX_IP, 25, reuse_address=True)),
            self._loop.run_until_complete(asyncio.start_server(self._smtp_plain, NO_TLS_IP, 25, reuse_address=True)),
        ]
        ready.set()
        self._loop.run_forever()

    def close(self) -> None:
        async def stop():
            for s in self._servers:
                s.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _smtp_tls(self, reader, writer):
        await self._converse(reader, writer, starttls=True)

    async def _smtp_plain(self, reader, writer):
        await self._converse(reader, writer, starttls=False)

    async def _converse(self, reader, writer, starttls: bool) -> None:
        try:
            writer.write(b"220 mx.test ESMTP\r\n")
            while True:
                line = await asyncio.wait_for(reader.readline(), 10)
                if not line:
                    return
                verb = line.strip().upper()
                if verb.startswith(b"EHLO"):
                    writer.write(b"250-mx.test\r\n" + (b"250-STARTTLS\r\n" if starttls else b"") + b"250 8BITMIME\r\n")
                elif verb == b"STARTTLS" and starttls:
                    writer.write(b"220 go ahead\r\n")
                    await writer.drain()
                    loop = asyncio.get_running_loop()
                    tls = await loop.start_tls(
                        writer.transport, writer.transport.get_protocol(), self._base, server_side=True
                    )
                    await asyncio.sleep(0.5)
                    tls.close()
                    return
                elif verb == b"QUIT":
                    writer.write(b"221 bye\r\n")
                    return
                else:
                    writer.write(b"502 not here\r\n")
        except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, OSError):
            pass
        finally:
            writer.transport.abort()
