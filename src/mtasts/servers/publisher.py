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
import ssl
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, Tuple

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from mtasts.config import Config
from mtasts.core.hostname import MxPattern
from mtasts.core.publication import PublishedDomain, policy_text
from mtasts.errors import ConfigError
from mtasts.servers.activation import PassedSockets, describe
from mtasts.servers.ratelimit import RateLimitedLog
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
# TLS costs memory per connection (about 100 KiB a handshake with the daemon's 32 KiB TLS
# read buffer, 290 KiB with CPython's default; bench/flood.py) before the client has said
# anything. Connections still in their handshake are bounded in total and
# per client (an IPv4 address or an IPv6 /64); past either bound a new TCP connection is
# closed before any TLS state exists, so a flood of silent clients costs a few bytes each
# and the policy stays reachable for everyone else.
MAX_HANDSHAKES = 64
MAX_HANDSHAKES_PER_CLIENT = 8
# A handshake running this long is a silent client's: it may be given up for a new one.
STALE_HANDSHAKE = 1.0
class _GuardedHandler(RequestHandler):
    """aiohttp's request handler, closed when over the connection cap or too slow."""

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.mtasts_served = False
        limit = self._manager.max_connections
        if len(self._manager.connections) > limit:
            log.warning("publisher: over %d connections, closing a new one", limit)
            transport.close()
            return
        self.mtasts_timer = asyncio.get_running_loop().call_later(FIRST_REQUEST_TIMEOUT, self._mtasts_expire)

    def _mtasts_expire(self) -> None:
        if not self.mtasts_served and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        timer = getattr(self, "mtasts_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)


class _GuardedServer(web.Server):
    max_connections = 2000

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


class _TlsGate(asyncio.Protocol):
    """The first protocol of every TCP connection: admits it to a TLS handshake within the
    bounds, or closes it at once. TLS starts only after admission (loop.start_tls)."""

    def __init__(self, publisher: "PolicyPublisher") -> None:
        self._publisher = publisher
        self.early = False

    def connection_made(self, transport) -> None:  # type: ignore[override]
        # No pause_reading() here: before Python 3.10 the transport starts reading after
        # connection_made whatever it was told. start_tls() runs first anyway: the loop
        # polls the socket only after the step that starts it, and then reads for the TLS
        # layer it has set up.
        self._publisher.admit(transport, self)

    def data_received(self, data: bytes) -> None:
        self.early = True  # bytes start_tls did not see: this handshake cannot succeed


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
        # Handshakes in progress, oldest first: task -> (client, TCP transport, monotonic start).
        self._in_handshake: "collections.OrderedDict[asyncio.Task[None], Tuple[str, Any, float]]" = (
            collections.OrderedDict())
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

    # -- TLS admission ------------------------------------------------------------------

    @property
    def handshaking(self) -> int:
        return len(self._in_handshake)

    def admit(self, transport, gate: Optional[_TlsGate] = None) -> None:
        """Start a TLS handshake for a new TCP connection, within the bounds. Past either (the
        client's own, or the total), the oldest handshake still running (of that client, or
        of all) is given up if it has run for STALE_HANDSHAKE seconds, else the new connection
        is closed. A real client finishes in milliseconds and is never given up; a silent
        flood never finishes, so its slots go stale and new clients, from other addresses or
        from the flood's own, get them."""
        client = client_of(transport.get_extra_info("peername"))
        now = time.monotonic()
        victim = None
        if self._handshakes.get(client, 0) >= MAX_HANDSHAKES_PER_CLIENT:
            victim = next(t for t, (c, _tr, _at) in self._in_handshake.items() if c == client)
        elif len(self._in_handshake) >= MAX_HANDSHAKES:
            victim = next(iter(self._in_handshake))
        if victim is not None:
            if now - self._in_handshake[victim][2] < STALE_HANDSHAKE:
                self._refusals.warning("publisher: %d TLS handshakes in progress (%d from %s): closing a new"
                                       " connection", len(self._in_handshake), self._handshakes.get(client, 0), client)
                transport.abort()
                return
            self._give_up(victim)
        self._handshakes[client] = self._handshakes.get(client, 0) + 1
        task = asyncio.ensure_future(self._handshake(transport, client, gate))
        self._in_handshake[task] = (client, transport, now)
        self._handshake_tasks.add(task)
        task.add_done_callback(self._handshake_done)

    def _give_up(self, task) -> None:
        client, transport, _started = self._in_handshake[task]
        self._refusals.warning("publisher: %d TLS handshakes in progress (%d from %s): giving up the oldest",
                               len(self._in_handshake), self._handshakes.get(client, 0), client)
        self._release(task)
        transport.abort()

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

    async def _handshake(self, transport, client: str, gate: Optional[_TlsGate] = None) -> None:
        assert self._server is not None
        if transport.is_closing():
            return  # given up before it started (a burst of accepts): no TLS state at all
        if gate is not None and gate.early:
            log.debug("publisher: %s sent data before the TLS layer was up: closing", client)
            transport.abort()
            return
        handler = self._server()
        try:
            tls = await asyncio.get_running_loop().start_tls(
                transport, handler, self.base_context, server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as exc:
            log.debug("publisher: TLS handshake with %s failed: %r", client, exc)
            transport.abort()
            return
        self._release(asyncio.current_task())
        if tls is None:  # the client left meanwhile
            return
        handler.connection_made(tls)

    # -- HTTP ------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        request.protocol.mtasts_served = True  # type: ignore[attr-defined]
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
        loop = asyncio.get_running_loop()
        self._server = _GuardedServer(
            self._handle,
            access_log=None,
            keepalive_timeout=KEEPALIVE,
            max_line_size=MAX_LINE,
            max_field_size=MAX_FIELD,
        )
        self._server.max_connections = self.config.publish.max_connections
        gate = lambda: _TlsGate(self)  # noqa: E731
        options = dict(backlog=1024)
        self._listeners = []
        if self.config.publish.listen == (("systemd", 0),):
            sockets = (self._passed or PassedSockets.from_environment()).claim_rest()
            if not sockets:
                raise ConfigError(f"{self.config.source}: [publish] listen: \"systemd\" given, but no socket was passed (LISTEN_FDS)")
            for sock in sockets:
                self._listeners.append(await loop.create_server(gate, sock=sock, **options))
                log.info("publisher listening on %s (socket held by systemd) for %s", describe(sock), self.serving())
        else:
            for host, port in self.config.publish.listen:
                try:
                    self._listeners.append(
                        await loop.create_server(gate, host, port, reuse_address=True, **options)
                    )
                except OSError as exc:
                    await self.close()
                    raise ConfigError(f"[publish] listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
                log.info("publisher listening on %s:%d for %s", host, port, self.serving())
        self._watcher = asyncio.ensure_future(self._watch())

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        for listener in getattr(self, "_listeners", []):
            listener.close()
        for task in list(self._handshake_tasks):
            task.cancel()
        await asyncio.gather(*self._handshake_tasks, return_exceptions=True)
        if getattr(self, "_server", None) is not None:
            await self._server.shutdown(1.0)
        self._listeners = []
        self.reports.close()


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return -1.0
