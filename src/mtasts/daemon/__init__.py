"""The daemon: the one composition root. It builds the pieces from a Config, runs until
SIGTERM, reloads on SIGHUP, and hands over to a successor (``--takeover``).

``state`` opens the cache tiers, ``journal`` sets up logging and speaks to systemd,
``postfix`` fits the answers to the Postfix that reads them, ``takeover`` retires a
predecessor. The publisher, dashboard and metrics servers (aiohttp, prometheus-client) are
imported only where they run: a resolver-only daemon never loads them.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import importlib.util
import logging
import os
import signal
import socket
from typing import TYPE_CHECKING, Any, Dict, Optional, Set

from mtasts import __version__
from mtasts.config import Config, load_config, restart_only, with_values
from mtasts.core.postfixcaps import PostfixInfo
from mtasts.daemon.journal import sd_notify, setup_logging
from mtasts.daemon.postfix import describe_answers, fit_to_postfix, learn_postfix
from mtasts.daemon.state import open_cache, open_shared, with_state_dir
from mtasts.daemon.takeover import Predecessor
from mtasts.errors import ConfigError, StoreError
from mtasts.exits import EXIT_CONFIG
from mtasts.net.dns import DnsClient
from mtasts.net.fetch import PolicyFetcher
from mtasts.resolver import PolicyResolver
from mtasts.servers.activation import PassedSockets, describe
from mtasts.servers.control import ControlServer
from mtasts.servers.socketmap import SocketmapServer
from mtasts.store.tiered import PolicyCache

if TYPE_CHECKING:
    from mtasts.servers.publisher import PolicyPublisher

log = logging.getLogger("mtasts")


# CPython (3.11+) gives every asyncio TLS connection a 256 KiB read buffer up front
# (SSLProtocol.max_size). TLS records are 16 KiB: 32 KiB does the same work, and a burst of
# 64 handshakes at the publisher (or the metrics and dashboard listeners) then holds 2 MB of
# buffers instead of 16 MB, which glibc rarely returns to the system. (Policy fetches use
# no SSLProtocol: net/fetch.py reads an ssl.SSLSocket 16 KiB at a time.)
TLS_READ_BUFFER = 32 * 1024


def smaller_tls_buffers() -> None:

    protocol: Any = asyncio.sslproto.SSLProtocol
    if getattr(protocol, "max_size", 0) > TLS_READ_BUFFER:  # absent before 3.11: reads are sized per call
        protocol.max_size = TLS_READ_BUFFER


class Daemon:
    def __init__(
        self, config: Config, config_path: Optional[str], only: Optional[str] = None, takeover: bool = False
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.takeover = takeover
        self.passed = PassedSockets([])
        self.stop: Optional[asyncio.Event] = None  # made in start(), on the loop that runs it
        self._predecessor: Optional[Any] = None
        self.run_resolver = only in (None, "resolver")
        self.run_publisher = only == "publisher" or (only is None and bool(config.publish.domains))
        self.publisher: Optional[PolicyPublisher] = None
        self.cache: Optional[PolicyCache] = None
        self.fetcher: Optional[PolicyFetcher] = None
        self.resolver: Optional[PolicyResolver] = None
        self.socketmap: Optional[SocketmapServer] = None
        self.control: Optional[ControlServer] = None
        self.metrics: Optional[Any] = None
        self.dashboard: Optional[Any] = None
        self.shared: Optional[Any] = None
        self._reloads: Set[asyncio.Task[None]] = set()
        self._reload_lock: Optional[asyncio.Lock] = None

    async def start(self) -> None:
        smaller_tls_buffers()
        self.stop = asyncio.Event()
        if self.takeover and not self.run_resolver:
            raise ConfigError(
                "--takeover replaces a running resolver; the publisher's port is held by systemd"
                " (mtasts-publish.socket) across restarts"
            )
        self.passed = PassedSockets.from_environment()
        # The resolver's sockets first (matched by address); the publisher's "systemd" takes the rest.
        held = {}
        if self.run_resolver:
            for listener in self.config.socketmap.listen:
                sock = self.passed.claim(listener)
                if sock is not None:
                    held[listener] = sock
        if self.run_publisher:
            if not self.config.publish.domains:
                raise ConfigError(f"{self.config.source}: [publish.domains]: expected at least one domain to publish")
            from mtasts.servers.publisher import PolicyPublisher  # imported only where it runs

            self.publisher = PolicyPublisher(self.config, self.passed)
            await self.publisher.start()
            if self.config.reports.listen is not None:
                await self._start_dashboard(*self.config.reports.listen.address)
        if self.run_resolver:
            await self._start_resolver(held)
        else:
            assert self.publisher is not None
            for sock in self.passed.claim_rest():
                log.warning(
                    'closing %s: systemd passed it, but the publisher does not listen on "systemd"', describe(sock)
                )
                sock.close()
            log.info("mtasts %s ready: publisher only, %s", __version__, self.publisher.serving())

    def _fit_to_postfix(self, config: Config, info: Optional[PostfixInfo] = None) -> Config:
        """The configuration with its answers fitted to the Postfix that reads them (*info*:
        already learned, else learned now)."""
        info = info if info is not None else learn_postfix(config)
        fitted = fit_to_postfix(config, info)
        log.info("%s (from %s): %s", info.describe(), info.source, describe_answers(fitted))
        return fitted

    async def _start_resolver(self, held: Dict[Any, socket.socket]) -> None:
        config = self.config = self._fit_to_postfix(self.config)
        if self.takeover:
            self._predecessor = await Predecessor.find(config.control_path)
        dns_client = DnsClient(config.resolver.servers, config.resolver.timeout)
        self.fetcher = PolicyFetcher(dns_client, config.fetch.timeout, config.fetch.ca_file)
        # No count or scan of the store here: start-up time must not grow with it (1M entries).
        self.shared = open_shared(config)
        self.cache = open_cache(config, self.shared)
        await self.fetcher.start()
        self.resolver = PolicyResolver(config, self.cache, dns_client, self.fetcher)
        await self.resolver.start()
        self.control = ControlServer(
            self.resolver,
            config.control_path,
            stats_extra=self._stats_extra,
            on_handover=self.stop.set if self.stop is not None else None,
            takeover=self.takeover,
        )
        await self.control.start()
        self.socketmap = SocketmapServer(
            self.resolver,
            config.socketmap.listen,
            config.socketmap.socket_mode,
            passed=held,
            extra=self.passed.claim_rest(),
            takeover=self.takeover,
            max_connections=config.socketmap.max_connections,
        )
        await self.socketmap.start()
        if config.metrics.listen is not None:
            await self._start_metrics(*config.metrics.listen.address)
        where = {
            "sqlite": config.cache.path,
            "memory": "memory only",
            "redis": f"{config.cache.path} + {self.shared.url if self.shared else config.cache.url}",
        }[config.cache.backend]
        log.info("mtasts %s ready: cache %s, DNS %s", __version__, where, ", ".join(dns_client.nameservers) or "system")

    def _stats_extra(self) -> Dict[str, Any]:
        socketmap = self.socketmap
        return {
            "connections": len(socketmap.connections) if socketmap else 0,
            # For `mtasts doctor`: do restarts refuse lookups (README "Restarts")?
            "held_by_systemd": socketmap.held if socketmap else [],
            "under_systemd": bool(os.environ.get("NOTIFY_SOCKET")),
        }

    async def _start_dashboard(self, host: str, port: int) -> None:
        from mtasts.servers.dashboard import ReportsDashboard

        publisher = self.publisher
        assert publisher is not None
        self.dashboard = ReportsDashboard(self.config, host, port, lambda: dict(publisher.reports.counts))
        try:
            await self.dashboard.start()
        except OSError as exc:
            raise ConfigError(
                f"{self.config.source}: [reports] listen: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None

    async def _start_metrics(self, host: str, port: int) -> None:
        from mtasts.servers.metrics import MetricsServer, ModeCounts

        if importlib.util.find_spec("prometheus_client") is None:
            raise ConfigError(
                f"{self.config.source}: [metrics] listen: needs the prometheus-client package"
                " (pip install 'mtasts[metrics]')"
            )
        assert self.cache is not None
        store = self.cache.store
        modes = ModeCounts(store.policies_by_mode) if store is not None else None
        self.metrics = MetricsServer(host, port, self._metrics_snapshot, modes)
        try:
            await self.metrics.start()
        except OSError as exc:
            raise ConfigError(
                f"{self.config.source}: [metrics] listen: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None

    def _metrics_snapshot(self) -> Dict[str, Any]:
        assert self.resolver is not None and self.cache is not None
        c = self.resolver.counters
        snapshot = c.snapshot()  # the same counters `mtasts cache stats` shows
        snapshot.update(
            {
                "answers": dict(c.answers),
                "fetch_latency": c.fetch_latency,
                "cache_hits": {
                    "memory": self.cache.memory_hits,
                    "sqlite": self.cache.store_hits,
                    "redis": self.shared.hits if self.shared else 0,
                },
                "redis_errors": self.shared.errors if self.shared else 0,
                "connections": len(self.socketmap.connections) if self.socketmap else 0,
                "store_errors": self.cache.store_errors,
                "overrides_active": len(self.resolver.overrides),
                "protocol_errors": self.socketmap.protocol_errors if self.socketmap else 0,
            }
        )
        return snapshot

    async def hand_over(self) -> None:
        """--takeover, once this daemon listens: the one it replaces drains and stops."""
        if self._predecessor is not None:
            pid = await self._predecessor.retire()  # None: refused or no reply, logged as an ERROR
            if pid is not None:
                log.info("took over from mtasts pid %s: it answers what it was asked and stops", pid)
            self._predecessor = None

    async def drain(self) -> None:
        """Before stopping: no new connections, every asked lookup answered."""
        if self.socketmap is not None:
            await self.socketmap.drain()

    async def close(self) -> None:
        if self._predecessor is not None:
            self._predecessor.close()
        for task in list(self._reloads):
            task.cancel()
        await asyncio.gather(*self._reloads, return_exceptions=True)
        for part in (
            self.metrics,
            self.dashboard,
            self.publisher,
            self.socketmap,
            self.control,
            self.resolver,
            self.fetcher,
            self.shared,
        ):
            if part is not None:
                await part.close()
        if self.cache is not None:
            self.cache.close()

    def reload(self) -> None:
        """SIGHUP, from the signal handler: the reload runs as a task, one at a time."""
        task = asyncio.ensure_future(self._reload_once())
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_once(self) -> None:
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            await self._reload()

    async def _reload(self) -> None:
        """The file is read once; the publisher takes its domains and certificates, the
        resolver its map profiles, log level, timeouts, cache timings and DANE settings, with
        connections and cache kept; listeners, nameservers, the cache location and Redis need a
        restart (the log says which changed). postconf runs in a thread: lookups go on."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        if self.publisher is not None:
            self.publisher.reload(new)
        if self.dashboard is not None:
            self.dashboard.reload(new)
        if self.resolver is None:
            return
        if self.socketmap is not None:
            self.socketmap.max_connections = new.socketmap.max_connections
        ignored, kept = [], new
        for section, key in restart_only():  # the schema's flag
            running = getattr(getattr(self.config, section), key)
            if getattr(getattr(new, section), key) != running:
                # A path left to its default stays where the running daemon put it (with_state_dir).
                if (section, key) != ("cache", "path") or "path" in new.cache.given:
                    ignored.append(f"[{section}] {key}")
                kept = with_values(kept, section, **{key: running})
        info = await asyncio.get_running_loop().run_in_executor(None, learn_postfix, kept)
        applied = self._fit_to_postfix(kept, info)
        self.config = applied
        self.resolver.reconfigure(applied)
        assert self.fetcher is not None
        self.fetcher.timeout = applied.fetch.timeout
        setup_logging(applied.log.level, applied.log.format)
        log.info("configuration reloaded from %s", applied.source)
        if ignored:
            log.warning("reload: %s change only on restart", ", ".join(ignored))


async def serve(config: Config, config_path: Optional[str], only: Optional[str] = None, takeover: bool = False) -> int:
    try:
        daemon = Daemon(with_state_dir(config) if only != "publisher" else config, config_path, only, takeover)
    except ConfigError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    loop = asyncio.get_running_loop()
    try:
        await daemon.start()
    except (ConfigError, StoreError) as exc:
        log.error("%s", exc)
        await daemon.close()
        return EXIT_CONFIG
    assert daemon.stop is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, daemon.stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    sd_notify("READY=1")
    await daemon.hand_over()
    await daemon.stop.wait()
    sd_notify("STOPPING=1")
    log.info("shutting down: answering the lookups in progress")
    await daemon.drain()
    await daemon.close()
    return 0
