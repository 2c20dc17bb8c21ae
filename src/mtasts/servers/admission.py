"""Who may talk to the publisher, and how many at once: its listeners' connections from
accept to close, each stage bounded in total and per client (an IPv4 address or an IPv6
/64), so that one client, or a silent flood from many, cannot keep others from the policy.

1. *silent*: accepted, nothing received yet, and no TLS state at all: a descriptor and a
   few bytes each (``MAX_SILENT``, ``MAX_SILENT_PER_CLIENT``, ``HELLO_TIMEOUT``);
2. *handshaking*: the client spoke, TLS started (``MAX_HANDSHAKES``, ...);
3. *established*: TLS done, HTTP served (``[publish] max_connections``,
   ``MAX_CONNECTIONS_PER_CLIENT``).

Past a bound the oldest of that stage (of that client, or of all) makes room: a silent one
at once, a handshake once it is stale, an established one if idle; else the newcomer goes.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import socket
import ssl
import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from mtasts.logs import RateLimitedLog

log = logging.getLogger("mtasts.publisher")

HANDSHAKE_TIMEOUT = 10.0
# A new TCP connection first waits, without any TLS state, for its first bytes (the
# ClientHello): a silent connection costs a descriptor and a few bytes, and silent floods
# from many addresses (700 a second from 64 addresses refused 94 % of real fetches when
# each took a handshake slot at once) only push out the oldest silent ones. Bounded in
# total and per client (an IPv4 address or an IPv6 /64); each given HELLO_TIMEOUT.
MAX_SILENT = 1024
MAX_SILENT_PER_CLIENT = 64
HELLO_TIMEOUT = 10.0
# New connections accepted per turn of the event loop: a burst waits for the next turn.
ACCEPTS_PER_TURN = 64
# TLS costs memory per connection (about 100 KiB a handshake with the daemon's 32 KiB TLS
# read buffer, 290 KiB with CPython's default; bench/flood.py). Handshakes in progress (the
# client has spoken) are bounded in total and per client; past either bound the oldest
# handshake of that client (or of all) is given up once it is STALE_HANDSHAKE old, else the
# new connection is closed.
MAX_HANDSHAKES = 64
MAX_HANDSHAKES_PER_CLIENT = 8
STALE_HANDSHAKE = 1.0
# Established connections of one client: a sender needs one; one address holding all of
# [publish] max_connections (200 handshakes a second did it) kept every other sender out.
MAX_CONNECTIONS_PER_CLIENT = 16


def client_of(peer) -> str:
    """The unit a per-client bound counts: the IPv4 address, or the IPv6 /64."""
    host = peer[0] if isinstance(peer, tuple) and peer else "?"
    if ":" in host:
        try:
            return str(ipaddress.ip_network(f"{host.split('%')[0]}/64", strict=False))
        except ValueError:
            return host
    return host


class Admission:
    """*factory*: the HTTP protocol of a connection once TLS is up; *context*: the TLS
    context (SNI picks each domain's); *max_connections*: ``[publish] max_connections``,
    read at each use (a reload changes it)."""

    def __init__(
        self,
        factory: Callable[[], asyncio.Protocol],
        context: ssl.SSLContext,
        max_connections: Callable[[], int],
        refusals: RateLimitedLog,
    ) -> None:
        self._factory = factory
        self._context = context
        self._max_connections = max_connections
        self._refusals = refusals
        self._handshakes: Dict[str, int] = {}  # client -> connections in their TLS handshake
        self._handshake_tasks: Set[asyncio.Task[None]] = set()
        # Handshakes in progress, oldest first: task -> (client, socket, monotonic start).
        self._in_handshake: collections.OrderedDict[asyncio.Task[None], Tuple[str, socket.socket, float]] = (
            collections.OrderedDict()
        )
        # Connections that have sent nothing yet, oldest first: socket -> (client, monotonic start).
        self._silent: collections.OrderedDict[socket.socket, Tuple[str, float]] = collections.OrderedDict()
        self._silent_of: Dict[str, int] = {}
        # Established (TLS done) connections, oldest first: handler -> client.
        self._established: collections.OrderedDict[Any, str] = collections.OrderedDict()
        self._established_of: Dict[str, int] = {}
        self._sweeper: Optional[asyncio.Task[None]] = None

    def start(self) -> None:
        self._sweeper = asyncio.ensure_future(self._sweep_silent())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
            self._sweeper = None
        for conn in list(self._silent):
            self._drop_silent(conn)
        for task in list(self._handshake_tasks):
            task.cancel()
        await asyncio.gather(*self._handshake_tasks, return_exceptions=True)

    @property
    def handshaking(self) -> int:
        return len(self._in_handshake)

    @property
    def silent(self) -> int:
        return len(self._silent)

    def accept(self, listener: socket.socket) -> None:
        """The listener is readable: take up to ACCEPTS_PER_TURN new connections."""
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPTS_PER_TURN):
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: the rest wait in the kernel's queue
                self._refusals.warning("publisher: cannot accept a connection: %s", exc.strerror or exc)
                return
            conn.setblocking(False)
            client = client_of(peer)
            if self._silent_of.get(client, 0) >= MAX_SILENT_PER_CLIENT:
                self._refusals.warning(
                    "publisher: %d connections from %s have sent nothing: closing the oldest",
                    self._silent_of[client],
                    client,
                )
                self._drop_silent(next(c for c, (who, _at) in self._silent.items() if who == client))
            elif len(self._silent) >= MAX_SILENT:
                self._refusals.warning(
                    "publisher: %d connections have sent nothing: closing the oldest", len(self._silent)
                )
                self._drop_silent(next(iter(self._silent)))
            self._silent[conn] = (client, time.monotonic())
            self._silent_of[client] = self._silent_of.get(client, 0) + 1
            loop.add_reader(conn.fileno(), self._spoke, conn)

    def _unsilence(self, conn: socket.socket) -> Optional[str]:
        entry = self._silent.pop(conn, None)
        if entry is None:
            return None
        asyncio.get_running_loop().remove_reader(conn.fileno())
        client = entry[0]
        count = self._silent_of.get(client, 1) - 1
        if count:
            self._silent_of[client] = count
        else:
            self._silent_of.pop(client, None)
        return client

    def _drop_silent(self, conn: socket.socket) -> None:
        self._unsilence(conn)
        conn.close()

    def _spoke(self, conn: socket.socket) -> None:
        """The first bytes of a connection arrived (its ClientHello, presumably): TLS may start."""
        client = self._unsilence(conn)
        if client is not None:
            self.admit(conn, client)

    async def _sweep_silent(self) -> None:
        """Close connections silent for HELLO_TIMEOUT (oldest first: the front of the order)."""
        while True:
            await asyncio.sleep(1.0)
            limit = time.monotonic() - HELLO_TIMEOUT
            while self._silent:
                conn, (_client, since) = next(iter(self._silent.items()))
                if since > limit:
                    break
                self._drop_silent(conn)

    def admit(self, conn: socket.socket, client: str) -> None:
        """Start a TLS handshake for *conn*, within the bounds. Past either (the client's own,
        or the total), the oldest handshake still running (of that client, or of all) is given
        up if it has run for STALE_HANDSHAKE seconds, else the new connection is closed. A real
        client finishes in milliseconds and is never given up."""
        now = time.monotonic()
        victim = None
        if self._handshakes.get(client, 0) >= MAX_HANDSHAKES_PER_CLIENT:
            victim = next(t for t, (c, _s, _at) in self._in_handshake.items() if c == client)
        elif len(self._in_handshake) >= MAX_HANDSHAKES:
            victim = next(iter(self._in_handshake))
        if victim is not None:
            if now - self._in_handshake[victim][2] < STALE_HANDSHAKE:
                self._refusals.warning(
                    "publisher: %d TLS handshakes in progress (%d from %s): closing a new connection",
                    len(self._in_handshake),
                    self._handshakes.get(client, 0),
                    client,
                )
                conn.close()
                return
            self._give_up(victim)
        self._handshakes[client] = self._handshakes.get(client, 0) + 1
        task = asyncio.ensure_future(self._handshake(conn, client))
        self._in_handshake[task] = (client, conn, now)
        self._handshake_tasks.add(task)
        task.add_done_callback(self._handshake_done)

    def _give_up(self, task) -> None:
        client = self._in_handshake[task][0]
        self._refusals.warning(
            "publisher: %d TLS handshakes in progress (%d from %s): giving up the oldest",
            len(self._in_handshake),
            self._handshakes.get(client, 0),
            client,
        )
        self._release(task)
        task.cancel()

    def _release(self, task) -> None:
        """The handshake of *task* no longer counts (done, failed or given up); once only."""
        entry = self._in_handshake.pop(task, None)
        if entry is None:
            return
        client = entry[0]
        count = self._handshakes.get(client, 1) - 1
        if count:
            self._handshakes[client] = count
        else:
            self._handshakes.pop(client, None)

    def _handshake_done(self, task) -> None:
        self._handshake_tasks.discard(task)
        self._release(task)

    async def _handshake(self, conn: socket.socket, client: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                self._factory, conn, ssl=self._context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
            )
        except asyncio.CancelledError:
            conn.close()  # given up for a newer one
            raise
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as exc:
            log.debug("publisher: TLS handshake with %s failed: %r", client, exc)
            conn.close()

    def established(self, handler: Any, transport: Any) -> None:
        """A connection finished its handshake. Past MAX_CONNECTIONS_PER_CLIENT of its client,
        or [publish] max_connections in all, the oldest idle connection (of that client, or of
        all) is closed to make room, or this one when none is idle."""
        client = client_of(transport.get_extra_info("peername"))
        self._established[handler] = client
        self._established_of[client] = self._established_of.get(client, 0) + 1
        if self._established_of[client] > MAX_CONNECTIONS_PER_CLIENT:
            mine = [h for h, c in self._established.items() if c == client]
            self._make_room(mine, handler, f"{MAX_CONNECTIONS_PER_CLIENT} connections from {client}")
        elif len(self._established) > self._max_connections():
            self._make_room(
                list(self._established), handler, f"{self._max_connections()} connections ([publish] max_connections)"
            )

    def _make_room(self, candidates: List[Any], newcomer: Any, bound: str) -> None:
        victim = next((h for h in candidates if h is not newcomer and not h.mtasts_busy), newcomer)
        self._refusals.warning(
            "publisher: over %s: closing %s", bound, "a new one" if victim is newcomer else "the oldest idle one"
        )
        if victim.transport is not None:
            victim.transport.abort()

    def lost(self, handler: Any) -> None:
        client = self._established.pop(handler, None)
        if client is None:
            return
        count = self._established_of.get(client, 1) - 1
        if count:
            self._established_of[client] = count
        else:
            self._established_of.pop(client, None)
