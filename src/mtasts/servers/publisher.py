"""The policy publisher: serves the local domains' policies over HTTPS (RFC 8461 §3.2, §7.1).

``GET``/``HEAD /.well-known/mta-sts.txt`` with ``Host: mta-sts.<domain>`` answers the
generated policy; anything else is a 404, never a redirect (§3.3: senders must not follow
them). Each domain's certificate is chosen by SNI; a handshake for an unknown name, or for
a domain whose certificate is missing or expired, is aborted rather than answered with
a chain that does not match (§7.1).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from typing import Any, Dict, List, Optional

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from mtasts.config import Config
from mtasts.core.publication import policy_text
from mtasts.core.remotetext import printable
from mtasts.errors import ConfigError
from mtasts.logs import RateLimitedLog
from mtasts.net.certificate import domain_context, read_certificate
from mtasts.servers.activation import PassedSockets, describe
from mtasts.servers.admission import Admission, client_of
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
FIRST_REQUEST_TIMEOUT = 10.0


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

    @property
    def _publisher(self) -> PolicyPublisher:
        server = self._manager
        assert isinstance(server, _GuardedServer)
        return server.publisher

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.mtasts_served = False
        self.mtasts_busy = False
        self.mtasts_timer = asyncio.get_running_loop().call_later(FIRST_REQUEST_TIMEOUT, self._mtasts_expire)
        self._publisher.established(self, transport)

    def _mtasts_expire(self) -> None:
        if not self.mtasts_served and self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        timer = getattr(self, "mtasts_timer", None)
        if timer is not None:
            timer.cancel()
        self._publisher.lost(self)
        super().connection_lost(exc)


class _GuardedServer(web.Server):
    publisher: PolicyPublisher

    def __call__(self) -> RequestHandler:
        return _GuardedHandler(self, loop=self._loop, **self._kwargs)


class PolicyPublisher:
    def __init__(self, config: Config, passed: Optional[PassedSockets] = None) -> None:
        self.config = config
        self._passed = passed  # the sockets systemd passed that the resolver did not claim
        self._bodies: Dict[str, bytes] = {}
        self._contexts: Dict[str, ssl.SSLContext] = {}
        self._expiries: Dict[str, float] = {}
        self._mtimes: Dict[str, float] = {}
        self._server: Optional[_GuardedServer] = None
        self._watcher: Optional[asyncio.Task[None]] = None
        self._listening: List[socket.socket] = []
        self.base_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.base_context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.base_context.sni_callback = self._select_certificate
        self.admission = Admission(
            self._http_connection, self.base_context, lambda: self.config.publish.max_connections, RateLimitedLog(log)
        )
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

    # -- admission ----------------------------------------------------------------------

    @property
    def handshaking(self) -> int:
        return self.admission.handshaking

    def established(self, handler: Any, transport: Any) -> None:
        self.admission.established(handler, transport)

    def lost(self, handler: Any) -> None:
        self.admission.lost(handler)

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
                raise ConfigError(
                    f'{self.config.source}: [publish] listen: "systemd" given, but no socket was passed (LISTEN_FDS)'
                )
            for sock in sockets:
                self._listen_on(sock)
                log.info("publisher listening on %s (socket held by systemd) for %s", describe(sock), self.serving())
        else:
            for host, port in (e.address for e in self.config.publish.listen):
                try:
                    sock = _bind(host, port)
                except OSError as exc:
                    await self.close()
                    raise ConfigError(
                        f"[publish] listen: cannot listen on {host}:{port}: {exc.strerror or exc}"
                    ) from None
                self._listen_on(sock)
                log.info("publisher listening on %s:%d for %s", host, port, self.serving())
        self._watcher = asyncio.ensure_future(self._watch())
        self.admission.start()

    def _http_connection(self) -> RequestHandler:
        assert self._server is not None, "start() made the HTTP server"
        return self._server()

    def _listen_on(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._listening.append(sock)
        asyncio.get_running_loop().add_reader(sock.fileno(), self.admission.accept, sock)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        loop = asyncio.get_running_loop()
        for listener in self._listening:
            loop.remove_reader(listener.fileno())
            listener.close()  # a socket systemd passed stays open in systemd
        self._listening = []
        await self.admission.close()
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
