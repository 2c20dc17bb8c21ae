"""The socketmap server Postfix talks to (socketmap_table(5)).

One asyncio Protocol per connection. Requests are answered in order; cached answers
are written at once, and a request that needs discovery holds back only the replies
queued behind it on the same connection (Postfix sends one request at a time per
connection anyway). A malformed netstring closes that one connection.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import socket
import stat
from typing import Deque, List, Optional, Union

from mtasts.core.netstring import NetstringDecoder, encode
from mtasts.core.socketmap import Status, format_reply, parse_request
from mtasts.errors import ConfigError, NetstringError, RequestError
from mtasts.resolver import PolicyResolver

log = logging.getLogger("mtasts.socketmap")

# Stop reading from a connection with this many unanswered requests (pipelining bound).
MAX_PENDING = 256

_Pending = Union[bytes, "asyncio.Future[bytes]"]


class SocketmapProtocol(asyncio.Protocol):
    def __init__(self, server: "SocketmapServer") -> None:
        self._server = server
        self._resolver = server.resolver
        self._decoder = NetstringDecoder()
        self._pending: Deque[_Pending] = collections.deque()
        self._transport: Optional[asyncio.Transport] = None
        self._paused = False
        self._peer = "?"

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        self._server.connections.add(self)

    def connection_lost(self, exc) -> None:
        self._server.connections.discard(self)
        for item in self._pending:
            if not isinstance(item, bytes):
                item.cancel()
        self._pending.clear()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self._decoder.feed(data)
        except NetstringError as exc:
            log.warning("closing socketmap connection from %s: %s", self._peer, exc)
            self._server.protocol_errors += 1
            self._abort()
            return
        resolver = self._resolver
        pending = self._pending
        for payload in payloads:
            try:
                request = parse_request(payload)
            except RequestError as exc:
                # A netstring Postfix would never send; answer it anyway, never hang up.
                reply: Optional[bytes] = format_reply(Status.PERM, str(exc))
            else:
                reply = resolver.answer_nowait(request.map_name, request.key)
            if reply is None:
                future = asyncio.ensure_future(resolver.answer(request.map_name, request.key))
                future.add_done_callback(self._flush_callback)
                pending.append(future)
            elif pending:
                pending.append(encode(reply))  # behind an unanswered request: keep the order
            elif self._transport is not None:
                self._transport.write(encode(reply))  # nothing queued ahead: answer at once
        if len(self._pending) > MAX_PENDING and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _flush_callback(self, _future) -> None:
        self._flush()

    def _flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        pending = self._pending
        out: List[bytes] = []
        while pending:
            head = pending[0]
            if isinstance(head, bytes):
                out.append(head)
            elif head.done():
                if head.cancelled():
                    return
                out.append(encode(head.result()))
            else:
                break
            pending.popleft()
        if out:
            transport.write(b"".join(out) if len(out) > 1 else out[0])
        if self._paused and len(pending) <= MAX_PENDING // 2:
            self._paused = False
            transport.resume_reading()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class SocketmapServer:
    def __init__(self, resolver: PolicyResolver, listeners, socket_mode: int = 0o660) -> None:
        self.resolver = resolver
        self.listeners = tuple(listeners)
        self.socket_mode = socket_mode
        self.connections: set = set()
        self.protocol_errors = 0
        self._servers: List[asyncio.AbstractServer] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self.listeners:
            factory = lambda: SocketmapProtocol(self)  # noqa: E731
            try:
                if listener.kind == "unix":
                    prepare_unix_path(listener.path)
                    server = await loop.create_unix_server(factory, listener.path)
                    os.chmod(listener.path, self.socket_mode)
                else:
                    server = await loop.create_server(
                        factory, listener.host, listener.port, reuse_address=True, backlog=1024
                    )
            except OSError as exc:
                await self.close()
                raise ConfigError(f"[socketmap] listen: cannot listen on {listener}: {exc.strerror or exc}") from None
            self._servers.append(server)
            log.info("socketmap listening on %s", listener)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        for listener in self.listeners:
            if listener.kind == "unix" and os.path.exists(listener.path):
                try:
                    os.unlink(listener.path)
                except OSError:
                    pass
        self._servers = []


def prepare_unix_path(path: str) -> None:
    """Remove a stale socket file; refuse to steal a live one or to delete a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # stale: nobody listens
        return
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, f"another process is listening on {path}")
