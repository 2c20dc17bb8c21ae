"""Receiving MX hosts that accept mail (SMTP with STARTTLS) and save each message to a file.

Per listening address a certificate name: the MX's own name, or another one (to be refused
by a verifying sender). Each saved message records whether it came over TLS.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import pathlib
import ssl

_counter = itertools.count(1)


class SmtpReceiver(asyncio.Protocol):
    def __init__(self, context: ssl.SSLContext, outdir: pathlib.Path, name: str) -> None:
        self.context, self.outdir, self.name = context, outdir, name
        self.buffer = b""
        self.tls = False
        self.in_data = False
        self.lines = []
        self.rcpts = []

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.send(f"220 {self.name} ESMTP test receiver")

    def send(self, line: str) -> None:
        self.transport.write(line.encode() + b"\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\r\n", 1)
            if self.in_data:
                if line == b".":
                    self.in_data = False
                    self.save()
                    self.send("250 2.0.0 queued")
                else:
                    self.lines.append(line[1:] if line.startswith(b"..") else line)
                continue
            self.command(line.decode("latin-1"))

    def command(self, line: str) -> None:
        verb = line.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            self.send(f"250-{self.name}")
            if not self.tls:
                self.send("250-STARTTLS")
            self.send("250 8BITMIME")
        elif verb == "STARTTLS" and not self.tls:
            self.send("220 2.0.0 ready")
            self.upgrading = asyncio.ensure_future(self.upgrade())  # kept: a task nobody holds may vanish
        elif verb == "MAIL":
            self.rcpts = []
            self.send("250 2.1.0 ok")
        elif verb == "RCPT":
            self.rcpts.append(line.split(":", 1)[1].strip().strip("<>"))
            self.send("250 2.1.5 ok")
        elif verb == "DATA":
            self.in_data, self.lines = True, []
            self.send("354 go ahead")
        elif verb == "QUIT":
            self.send("221 2.0.0 bye")
            self.transport.close()
        elif verb in ("RSET", "NOOP"):
            self.send("250 2.0.0 ok")
        else:
            self.send("502 5.5.2 not implemented")

    async def upgrade(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.transport = await loop.start_tls(self.transport, self, self.context, server_side=True)
            self.tls = True
        except (ssl.SSLError, ConnectionError, OSError):
            self.transport.abort()

    def save(self) -> None:
        record = {
            "mx": self.name,
            "tls": self.tls,
            "rcpts": self.rcpts,
            "message": b"\n".join(self.lines).decode("utf-8", "replace"),
        }
        path = self.outdir / f"{self.name}-{next(_counter)}.json"
        path.write_text(json.dumps(record))
