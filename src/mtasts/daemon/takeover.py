"""``mtasts serve --takeover``: the running daemon this one replaces, reached on its control
socket, asked to drain and stop once the new one listens (no lookup is refused)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from mtasts.errors import ConfigError

log = logging.getLogger("mtasts")


class Predecessor:
    """The running daemon a --takeover start replaces, reached on its control socket."""

    def __init__(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer

    @classmethod
    async def find(cls, path: str) -> Predecessor:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(path), 5.0)
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConfigError(
                f"--takeover: no running mtasts answers on its control socket {path}"
                f" ({getattr(exc, 'strerror', None) or exc or 'timed out'}); start without --takeover"
            ) from None
        return cls(path, reader, writer)

    async def retire(self) -> Any:
        try:
            self._writer.write(b'{"command": "handover"}\n')
            reply = json.loads(await asyncio.wait_for(self._reader.readline(), 10.0) or b"{}")
        except (OSError, ValueError, asyncio.TimeoutError) as exc:
            log.error(
                "--takeover: the daemon at %s did not confirm the handover (%s); stop it yourself", self.path, exc
            )
            return None
        finally:
            self.close()
        if not reply.get("ok"):
            log.error(
                "--takeover: the daemon at %s refused the handover: %s; stop it yourself",
                self.path,
                reply.get("error", "no reason given"),
            )
            return None
        return reply.get("pid")

    def close(self) -> None:
        self._writer.close()
