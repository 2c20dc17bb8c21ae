"""The policy publisher: serves the local domains' policies over HTTPS (RFC 8461 §3.2, §7.1).

``GET``/``HEAD /.well-known/mta-sts.txt`` with ``Host: mta-sts.<domain>`` answers the
generated policy; anything else is a 404, never a redirect (§3.3: senders must not follow
them). Each domain's certificate is chosen by SNI; a handshake for an unknown name, or for
a domain whose certificate is missing or expired, is aborted rather than answered with
a chain that does not match (§7.1).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import os
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from mtasts.config import Config
from mtasts.core.hostname import MxPattern
from mtasts.core.remotetext import printable
from mtasts.core.publication import PublishedDomain, policy_text
from mtasts.errors import ConfigError
from mtasts.servers.activation import PassedSockets, describe
from mtasts.logs import RateLimitedLog
from mtasts.servers.reportsink import ReportSink

log = logging.getLogger("mtasts.publisher")

POLICY_PATH = "/.well-known/mta-sts.txt"
# Limits for a public server: request line and header sizes, idle keep-alive.
MAX_LINE = 4096
MAX_FIELD = 4096
KEEPALIVE = 5.0
# How often certificate and key files are checked for changes (certbot renewals).
WATCH_INTERVAL = 30.0
# A public server must not be held open by slow or idle clients: the TLS handshake and
# the first complete request each get this long; past [publish] max_connections new ones are closed.
HANDSHAKE_TIMEOUT = 10.0
FIRST_REQUEST_TIMEOUT = 10.0
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


class _HttpErrorLog(logging.Filter):
    """aiohttp's "Error handling request" for each malformed request, traceback and all
    (80 requests made 620 lines): one WARNING line each instead, rate-limited."""

    def __init__(self) -> None:
        super().__init__()
        self._lines = RateLimitedLog(log)

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        what = f"{type(error).__name__}: {printable(str(error), 200)}" if error else printable(record.getMessage(), 200)
        if record.levelno >= logging.WARNING:
            self._lines.warning("publisher: a client's request was refused: %s", what)
        return False


_http_log = logging.getLogger("mtasts.publisher.http")
_http_log.addFilter(_HttpErrorLog())


class _GuardedHandler(RequestHandler):
    """aiohttp's request handler, closed when too slow; the publisher bounds how many."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.mtasts_served = False
        self.mtasts_busy = False
        self.mtasts_timer = asyncio.get_running_loop().call_later(FIRST_REQUEST_TIMEOUT, self._mtasts_expire)
        self._manager.publisher.established(self, transport)

    def _mtasts_expire(self) -> None:
        if not self.mtasts_served and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        timer = getattr(self, "mtasts_timer", None)
        if timer is not None:
            timer.cancel()
        self._manager.publisher.lost(self)
        super().connection_lost(exc)


class _GuardedServer(web.Server):
    publisher: "PolicyPublisher"

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


def client_of(peer) -> str:
    """The unit a per-client bound counts: the IPv4 address, or the IPv6 /64."""
    host = peer[0] if isinstance(peer, tuple) and peer else "?"
    if ":" in host:
        try:
            return str(ipaddress.ip_network(f"{host.split('%')[0]}/64", strict=False))
        except ValueError:
            return host
    return host


@dataclass(frozen=True)
class CertificateInfo:
    names: Tuple[str, ...]
    not_after: float


def read_certificate(path: str) -> CertificateInfo:
    """Names and expiry of the first certificate in a PEM file.

    Uses CPython's certificate decoder (``ssl._ssl._test_decode_cert``), so no X.509
    library is needed at run time.
    """
    try:
        info = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot read certificate {path}: {exc}") from None
    names = tuple(v.lower() for k, v in info.get("subjectAltName", ()) if k == "DNS")
    return CertificateInfo(names, ssl.cert_time_to_seconds(info["notAfter"]))


def covers(names: Tuple[str, ...], host: str) -> bool:
    """RFC 6125 DNS-ID match: the same one-label wildcard rule as MX patterns (§4.1)."""
    for name in names:
        try:
            if MxPattern.parse(name).matches(host):
                return True
        except ValueError:
            continue  # not a host name or pattern: covers nothing
    return False


def domain_context(d: PublishedDomain, now: float) -> ssl.SSLContext:
    """The TLS context for one domain; ValueError naming what is wrong with its files."""
    if not d.cert or not d.key:
        raise ValueError("cert and key must both be set to serve this domain")
    info = read_certificate(d.cert)
    if not covers(info.names, d.policy_host):
        raise ValueError(f"certificate {d.cert} does not cover {d.policy_host} (it covers {', '.join(info.names) or 'no DNS name'})")
    if info.not_after <= now:
        raise ValueError(f"certificate {d.cert} expired on {time.strftime('%Y-%m-%d', time.gmtime(info.not_after))}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # §7.2
    try:
        context.load_cert_chain(d.cert, d.key)
    except ssl.SSLError as exc:
        raise ValueError(f"key {d.key} does not match certificate {d.cert} ({exc.reason or exc})") from None
    except OSError as exc:
        raise ValueError(f"cannot read {exc.filename or d.key}: {exc.strerror}") from None
    return context


def check_domain_files(config: Config, now: float) -> List[str]:
    """Problems with the configured certificates, one line each (empty: all good)."""
    problems = []
    for name, d in sorted(config.publish.domains.items()):
        try:
            domain_context(d, now)
        except ValueError as exc:
            problems.append(f'{config.source}: [publish.domains."{name}"] cert/key: {exc}')
    return problems


class PolicyPublisher:
    def __init__(self, config: Config, passed: Optional[PassedSockets] = None) -> None:
        self.config = config
        self._passed = passed  # the sockets systemd passed that the resolver did not claim
        self._bodies: Dict[str, bytes] = {}
        self._contexts: Dict[str, ssl.SSLContext] = {}
        self._expiries: Dict[str, float] = {}
        self._mtimes: Dict[str, float] = {}
        self._server: Optional[_GuardedServer] = None
        self._watcher: Optional["asyncio.Task[None]"] = None
        self._handshakes: Dict[str, int] = {}  # client -> connections in their TLS handshake
        self._handshake_tasks: Set["asyncio.Task[None]"] = set()
        # Handshakes in progress, oldest first: task -> (client, socket, monotonic start).
        self._in_handshake: "collections.OrderedDict[asyncio.Task[None], Tuple[str, socket.socket, float]]" = (
            collections.OrderedDict())
        # Connections that have sent nothing yet, oldest first: socket -> (client, monotonic start).
        self._silent: "collections.OrderedDict[socket.socket, Tuple[str, float]]" = collections.OrderedDict()
        self._silent_of: Dict[str, int] = {}
        # Established (TLS done) connections, oldest first: handler -> client.
        self._established: "collections.OrderedDict[Any, str]" = collections.OrderedDict()
        self._established_of: Dict[str, int] = {}
        self._listening: List[socket.socket] = []
        self._sweeper: Optional["asyncio.Task[None]"] = None
        self.base_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.base_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.base_context.sni_callback = self._select_certificate
        self._refusals = RateLimitedLog(log)
        self.reports = ReportSink(config)  # TLSRPT reports POSTed to [reports] https_path
        self._load(config)

    # -- policies and certificates -----------------------------------------------------

    def _load(self, config: Config) -> None:
        bodies, contexts, mtimes, expiries = {}, {}, {}, {}
        now = time.time()
        for name, d in config.publish.domains.items():
            bodies[d.policy_host] = policy_text(d)
            try:
                contexts[d.policy_host] = domain_context(d, now)
                expiries[d.policy_host] = read_certificate(d.cert).not_after
            except ValueError as exc:
                log.error("%s: not serving %s over TLS: %s", name, d.policy_host, exc)
            for path in (d.cert, d.key):
                if path:
                    mtimes[path] = _mtime(path)
        self._bodies, self._contexts, self._mtimes = bodies, contexts, mtimes
        self._expiries = expiries
        self.config = config

    def serving(self) -> str:
        """What is actually served, for the log: a domain without a usable certificate is not."""
        total, usable = len(self._bodies), len(self._contexts)
        what = f"{usable} {'domain' if usable == 1 else 'domains'}"
        if usable < total:
            what += f" ({total - usable} of {total} not served: no usable certificate, see the errors above)"
        return what

    def expired_while_serving(self, now: float) -> List[str]:
        """Policy hosts whose certificate expired since it was loaded (§7.1: stop serving it)."""
        return sorted(host for host, not_after in self._expiries.items() if now >= not_after)

    def reload(self, config: Config) -> None:
        """Serve *config*'s policies and certificates from now on (SIGHUP)."""
        self._load(config)
        self.reports.reload(config)
        log.info("publisher reloaded: %s", self.serving())

    def _select_certificate(self, sslobj, server_name, _context):
        context = self._contexts.get((server_name or "").lower())
        if context is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME  # abort: never a wrong chain (§7.1)
        sslobj.context = context
        return None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            if any(_mtime(p) != m for p, m in self._mtimes.items()):
                log.info("certificate or key file changed: reloading the publisher")
                self._load(self.config)
            elif self.expired_while_serving(time.time()):
                # Reloading drops the expired context: its handshakes are aborted from now on.
                self._load(self.config)

    # -- admission: silent, handshaking, established -------------------------------------

    @property
    def handshaking(self) -> int:
        return len(self._in_handshake)

    @property
    def silent(self) -> int:
        return len(self._silent)

    def _accept(self, listener: socket.socket) -> None:
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
                self._refusals.warning("publisher: %d connections from %s have sent nothing: closing the oldest",
                                       self._silent_of[client], client)
                self._drop_silent(next(c for c, (who, _at) in self._silent.items() if who == client))
            elif len(self._silent) >= MAX_SILENT:
                self._refusals.warning("publisher: %d connections have sent nothing: closing the oldest",
                                       len(self._silent))
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
                self._refusals.warning("publisher: %d TLS handshakes in progress (%d from %s): closing a new"
                                       " connection", len(self._in_handshake), self._handshakes.get(client, 0), client)
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
        self._refusals.warning("publisher: %d TLS handshakes in progress (%d from %s): giving up the oldest",
                               len(self._in_handshake), self._handshakes.get(client, 0), client)
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
        assert self._server is not None
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(self._server, conn, ssl=self.base_context,
                                               ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
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
        elif len(self._established) > self.config.publish.max_connections:
            self._make_room(list(self._established), handler,
                            f"{self.config.publish.max_connections} connections ([publish] max_connections)")

    def _make_room(self, candidates: List[Any], newcomer: Any, bound: str) -> None:
        victim = next((h for h in candidates if h is not newcomer and not h.mtasts_busy), newcomer)
        self._refusals.warning("publisher: over %s: closing %s", bound,
                               "a new one" if victim is newcomer else "the oldest idle one")
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

    # -- HTTP ------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        protocol = request.protocol
        protocol.mtasts_served = True  # type: ignore[attr-defined]
        protocol.mtasts_busy = True  # type: ignore[attr-defined]
        try:
            return await self._respond(request)
        finally:
            protocol.mtasts_busy = False  # type: ignore[attr-defined]

    async def _respond(self, request: web.BaseRequest) -> web.StreamResponse:
        host = request.host or ""
        host = "" if host.startswith("[") else host.split(":", 1)[0].lower()
        body = self._bodies.get(host)
        if body is not None and request.path == self.config.reports.https_path and self.config.reports.https_path:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            return await self.reports.handle(request, client_of(peer))
        if request.path != POLICY_PATH or body is None:
            return web.Response(status=404, text="not found\n")
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="method not allowed\n", headers={"Allow": "GET, HEAD"})
        return web.Response(
            body=body,
            headers={
                "Content-Type": "text/plain; charset=utf-8",
                "Cache-Control": "max-age=60",  # RFC 8461 §8.2 suggests a short cache for proxies
            },
        )

    async def start(self) -> None:
        self._server = _GuardedServer(
            self._handle,
            access_log=None,
            keepalive_timeout=KEEPALIVE,
            max_line_size=MAX_LINE,
            max_field_size=MAX_FIELD,
            logger=_http_log,
        )
        self._server.publisher = self
        if self.config.publish.systemd:
            sockets = (self._passed or PassedSockets.from_environment()).claim_rest()
            if not sockets:
                raise ConfigError(f"{self.config.source}: [publish] listen: \"systemd\" given, but no socket was passed (LISTEN_FDS)")
            for sock in sockets:
                self._listen_on(sock)
                log.info("publisher listening on %s (socket held by systemd) for %s", describe(sock), self.serving())
        else:
            for host, port in (e.address for e in self.config.publish.listen):
                try:
                    sock = _bind(host, port)
                except OSError as exc:
                    await self.close()
                    raise ConfigError(f"[publish] listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
                self._listen_on(sock)
                log.info("publisher listening on %s:%d for %s", host, port, self.serving())
        self._watcher = asyncio.ensure_future(self._watch())
        self._sweeper = asyncio.ensure_future(self._sweep_silent())

    def _listen_on(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._listening.append(sock)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, sock)

    async def close(self) -> None:
        for task in (self._watcher, self._sweeper):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._watcher = self._sweeper = None
        loop = asyncio.get_running_loop()
        for listener in self._listening:
            loop.remove_reader(listener.fileno())
            listener.close()  # a socket systemd passed stays open in systemd
        self._listening = []
        for conn in list(self._silent):
            self._drop_silent(conn)
        for task in list(self._handshake_tasks):
            task.cancel()
        await asyncio.gather(*self._handshake_tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.shutdown(1.0)
        self.reports.close()


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on *host*:*port* (IPv6 only for an IPv6 address, so that
    "0.0.0.0" and "::" can both be listened on)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except BaseException:
        sock.close()
        raise
    return sock


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0
