"""The socketmap server Postfix talks to (socketmap_table(5)).

One asyncio Protocol per connection. Requests are answered in order; cached answers
are written at once, and a request that needs discovery holds back only the replies
queued behind it on the same connection (Postfix sends one request at a time per
connection anyway). A malformed netstring closes that one connection.

Stopping drains (``SocketmapServer.drain``): the listeners close first (under systemd the
socket itself stays with systemd, and the kernel queues new connections for the next
daemon), then every connection is closed as soon as it has no unanswered request. Postfix
retries a lookup once on a fresh connection when the old one ends between requests
(dict_sockmap.c: "to make server restarts transparent"), so no lookup fails on a restart.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import socket
import time
from typing import Deque, Dict, List, Optional, Sequence, Union

from mtasts.config import Endpoint
from mtasts.core.netstring import NetstringDecoder, encode
from mtasts.core.socketmap import Status, format_reply, parse_request
from mtasts.errors import ConfigError, NetstringError, RequestError
from mtasts.logs import RateLimitedLog
from mtasts.resolver import PolicyResolver
from mtasts.servers.activation import describe
from mtasts.servers.unixsocket import OwnedUnixSocket

log = logging.getLogger("mtasts.socketmap")

# Stop reading from a connection with this many unanswered requests (pipelining bound).
MAX_PENDING = 256
# Stop reading from a connection whose unsent replies exceed this many bytes, until the
# client reads them: Postfix has one request in flight per connection, so only a client
# that pipelines and never reads gets here, and it must not grow our memory.
MAX_UNSENT = 64 * 1024
# Lookups of one connection that miss the memory tier (a store read, a task for the network)
# handled per turn of the event loop; the rest wait for the next turn, so that 100 connections
# pipelining new domains cannot hold the loop while a cached lookup waits (issue 24, 7).
MISSES_PER_TURN = 4
# A stopping daemon waits this long for lookups in progress (a discovery takes at most the
# DNS and fetch timeouts) before it closes what is left; below systemd's TimeoutStopSec=15.
DRAIN_TIMEOUT = 10.0

_Pending = Union[bytes, "asyncio.Future[bytes]"]


class SocketmapProtocol(asyncio.Protocol):
    def __init__(self, server: SocketmapServer) -> None:
        self._server = server
        self._resolver = server.resolver
        self._decoder = NetstringDecoder()
        self._pending: Deque[_Pending] = collections.deque()
        self._backlog: Deque[bytes] = collections.deque()  # requests read, not yet looked at
        self._transport: Optional[asyncio.Transport] = None
        self._paused = False  # for too many unanswered requests
        self._writing_paused = False  # for too many unsent bytes
        self._draining = False
        self._peer = "?"
        self.last_read = 0.0  # monotonic: when a request last came (the idlest is closed first)

    def connection_made(self, transport) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(high=MAX_UNSENT)
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "unix"
        self.last_read = time.monotonic()
        self._server.admit(self)

    @property
    def idle(self) -> bool:
        """No request of this connection waits for its answer."""
        return not self._pending and not self._backlog

    def connection_lost(self, exc) -> None:
        self._server.connections.discard(self)
        for item in self._pending:
            if not isinstance(item, bytes):
                item.cancel()
        self._pending.clear()
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        try:
            payloads = self._decoder.feed(data)
        except NetstringError as exc:
            self._server.protocol_errors += 1
            self._server.error_log.warning("closing socketmap connection from %s: %s", self._peer, exc)
            self.abort()
            return
        if self._backlog:  # earlier requests wait for their turn: these go behind them
            self._backlog.extend(payloads)
            return
        self._serve(payloads)

    def _serve(self, payloads) -> None:
        resolver = self._resolver
        pending = self._pending
        misses = 0
        for index, payload in enumerate(payloads):
            if misses >= MISSES_PER_TURN:
                self._defer(payloads, index)
                break
            try:
                request = parse_request(payload)
            except RequestError as exc:
                # A netstring Postfix would never send; answer it anyway, never hang up.
                reply: Optional[bytes] = format_reply(Status.PERM, str(exc))
            else:
                try:
                    reply = resolver.answer_nowait(request.map_name, request.key)
                except Exception:
                    # Our bug: this one lookup gets TEMP (Postfix retries), the connection and
                    # the requests pipelined behind it carry on.
                    resolver.counters.internal_errors += 1
                    log.exception("internal error answering %r", request.key[:100])
                    reply = format_reply(Status.TEMP, "mtasts internal error, see its log")
            if reply is None:
                misses += 1
                later = resolver.answer_later(request.map_name, request.key)
                if isinstance(later, bytes):
                    reply = later  # refused at once (too many waiting): no task
                else:
                    later.add_done_callback(self._flush_callback)
                    pending.append(later)
                    continue
            if pending:
                pending.append(encode(reply))  # behind an unanswered request: keep the order
            elif self._transport is not None:
                self._transport.write(encode(reply))  # nothing queued ahead: answer at once
        if self._draining and not pending and not self._backlog:
            self._end()
            return
        if len(self._pending) > MAX_PENDING and not self._paused and self._transport is not None:
            self._paused = True
            if not self._writing_paused:
                self._transport.pause_reading()

    def _defer(self, payloads, index: int) -> None:
        """Leave *payloads* from *index* on for the next turn of the event loop; read nothing
        more from this connection meanwhile."""
        self._backlog.extend(payloads[index:] if isinstance(payloads, list) else list(payloads)[index:])
        if self._transport is not None:
            self._transport.pause_reading()
        asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        if self._transport is None:
            self._backlog.clear()
            return
        backlog, self._backlog = list(self._backlog), collections.deque()
        self._serve(backlog)
        if not self._backlog and not self._paused and not self._writing_paused and self._transport is not None:
            self._transport.resume_reading()

    def pause_writing(self) -> None:
        # asyncio: the transport holds more than MAX_UNSENT unsent bytes.
        self._writing_paused = True
        if self._transport is not None and not self._paused:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        if self._transport is not None and not self._paused and not self._backlog:
            self._transport.resume_reading()

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
        if self._draining and not pending and not self._backlog:
            self._end()
            return
        if self._paused and len(pending) <= MAX_PENDING // 2:
            self._paused = False
            if not self._writing_paused and not self._backlog:
                transport.resume_reading()

    def drain(self) -> None:
        """Close once every request read so far is answered (at once when none is waiting)."""
        self._draining = True
        if not self._pending and not self._backlog:
            self._end()

    def _end(self) -> None:
        if self._transport is not None:
            self._transport.close()  # after the unsent replies are written

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class SocketmapServer:
    """The listeners of [socketmap] listen and their connections.

    *passed*: sockets systemd holds for some of the listeners (``servers.activation``);
    *extra*: passed sockets no listener names, served too (systemd sent Postfix there).
    *takeover*: another mtasts serves these listeners and is about to drain: share its TCP
    ports (SO_REUSEPORT) and replace its unix sockets, instead of refusing to start.
    """

    def __init__(
        self,
        resolver: PolicyResolver,
        listeners: Sequence[Endpoint],
        socket_mode: int = 0o660,
        passed: Optional[Dict[Endpoint, socket.socket]] = None,
        extra: Sequence[socket.socket] = (),
        takeover: bool = False,
        max_connections: int = 1024,
    ) -> None:
        self.resolver = resolver
        self.max_connections = max_connections
        self.listeners = tuple(listeners)
        self.socket_mode = socket_mode
        self.passed = dict(passed or {})
        self.extra = list(extra)
        self.takeover = takeover
        self.connections: set = set()
        self.held: List[str] = []  # the listeners whose socket systemd holds
        self.protocol_errors = 0
        self.error_log = RateLimitedLog(log)
        self._servers: List[asyncio.AbstractServer] = []
        self._unix: List[OwnedUnixSocket] = []
        self._crowd_log = RateLimitedLog(log)

    def admit(self, protocol: SocketmapProtocol) -> None:
        """A new connection: counted, and past ``max_connections`` the longest idle one is
        closed to make room (Postfix retries a lookup once on a fresh connection when an idle
        one ends, dict_sockmap.c); with none idle, the new one is closed. Each connection holds
        a descriptor: unbounded, a client opening thousands would leave none for lookups."""
        self.connections.add(protocol)
        if len(self.connections) <= self.max_connections:
            return
        idle = [c for c in self.connections if c.idle and c is not protocol]
        victim = min(idle, key=lambda c: c.last_read) if idle else protocol
        self._crowd_log.warning(
            "socketmap: over %d connections ([socketmap] max_connections): closing %s",
            self.max_connections,
            "the longest idle one" if idle else "a new one",
        )
        victim.abort()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        factory = lambda: SocketmapProtocol(self)  # noqa: E731
        for listener in self.listeners:
            passed = self.passed.pop(listener, None)
            try:
                if passed is not None:
                    server = await loop.create_server(factory, sock=passed, backlog=1024)
                    self.held.append(str(listener))
                elif listener.kind == "unix":
                    owned = OwnedUnixSocket(listener.path, self.socket_mode, "[socketmap] listen")
                    sock = owned.bind(replace=self.takeover)
                    self._unix.append(owned)
                    server = await loop.create_unix_server(factory, sock=sock, backlog=1024)
                else:
                    if not self.takeover:
                        _refuse_if_served(listener)
                    # SO_REUSEPORT: the next daemon (--takeover) can listen beside this one.
                    server = await loop.create_server(
                        factory, listener.host, listener.port, reuse_address=True, reuse_port=True, backlog=1024
                    )
            except OSError as exc:
                await self.close()
                raise ConfigError(f"[socketmap] listen: cannot listen on {listener}: {exc.strerror or exc}") from None
            self._servers.append(server)
            log.info("socketmap listening on %s%s", listener, " (socket held by systemd)" if passed else "")
        for sock in self.extra:
            self._servers.append(await loop.create_server(factory, sock=sock, backlog=1024))
            log.warning(
                "socketmap also listening on %s: systemd passed it but [socketmap] listen does not name it;"
                " make mtasts.socket and [socketmap] listen agree",
                describe(sock),
            )
        self.extra = []

    async def drain(self, timeout: float = DRAIN_TIMEOUT) -> None:
        """Stop accepting, answer what was asked, close every connection (see the module)."""
        for server in self._servers:
            server.close()  # a socket systemd passed stays open in systemd, queueing for the next daemon
        connections = list(self.connections)
        for protocol in connections:
            protocol.drain()
        deadline = time.monotonic() + timeout
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.connections:
            log.warning(
                "closing %d socketmap connections with lookups still running after %g s (Postfix retries them)",
                len(self.connections),
                timeout,
            )
            for protocol in list(self.connections):
                protocol.abort()
        log.info("socketmap drained (%d connections closed)", len(connections))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for protocol in list(self.connections):
            protocol.abort()
        for server in self._servers:
            await server.wait_closed()
        for owned in self._unix:
            owned.remove()  # only the sockets this process bound, never another daemon's
        self._servers = []
        self._unix = []


def _refuse_if_served(listener: Endpoint) -> None:
    """Every listener binds with SO_REUSEPORT, so a second mtasts of the same user would
    share the port silently: refuse unless it was asked to take over."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listener.host, listener.host)
    try:
        with socket.create_connection((host, listener.port), timeout=0.5):
            pass
    except OSError:
        return
    raise OSError(
        errno.EADDRINUSE,
        "another process is listening there (a running mtasts? `mtasts serve --takeover`"
        " replaces it without refusing a lookup)",
    )
