"""Wiring: build the pieces from a Config, run until SIGTERM, reload on SIGHUP."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
from typing import Optional

from mtasts import __version__
from mtasts.config import SYSTEM_STATE_DIR, Config, load_config, user_state_dir
from mtasts.errors import ConfigError, StoreError
from mtasts.net.dns import DnsClient
from mtasts.net.fetch import PolicyFetcher
from mtasts.resolver import PolicyResolver
from mtasts.servers.control import ControlServer
from mtasts.servers.publisher import PolicyPublisher
from mtasts.servers.socketmap import SocketmapServer
from mtasts.store.sqlite import SqliteStore
from mtasts.store.tiered import PolicyCache

log = logging.getLogger("mtasts")


def setup_logging(level: str) -> None:
    # Under systemd (JOURNAL_STREAM set) journald adds the timestamps.
    fmt = "%(levelname)s %(message)s" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s %(levelname)s %(message)s"
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
    root.setLevel(level.upper())


def with_state_dir(config: Config) -> Config:
    """Make sure the cache directory exists; fall back to a per-user one when the
    default system directory cannot be created (an ordinary user running the daemon)."""
    if config.cache_backend != "sqlite" and config.control_socket:
        return config
    directory = os.path.dirname(config.cache_path)
    try:
        os.makedirs(directory, mode=0o750, exist_ok=True)
        if os.access(directory, os.W_OK):
            return config
        raise PermissionError(directory)
    except OSError as exc:
        if config.cache_path_explicit or directory != SYSTEM_STATE_DIR:
            raise ConfigError(
                f"{config.source}: [cache] path: cannot create or write {directory}: {exc.strerror or exc}"
            ) from None
    fallback = user_state_dir()
    os.makedirs(fallback, mode=0o700, exist_ok=True)
    path = os.path.join(fallback, os.path.basename(config.cache_path))
    log.info("%s is not writable for this user; using %s", directory, fallback)
    return dataclasses.replace(config, cache_path=path)


def open_cache(config: Config) -> PolicyCache:
    store = SqliteStore(config.cache_path) if config.cache_backend == "sqlite" else None
    return PolicyCache(config.memory_entries, store)


def sd_notify(message: str) -> None:
    """systemd's notify protocol (sd_notify(3)); a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)


class Daemon:
    def __init__(self, config: Config, config_path: Optional[str], only: Optional[str] = None) -> None:
        self.config = config
        self.config_path = config_path
        self.run_resolver = only in (None, "resolver")
        self.run_publisher = only == "publisher" or (only is None and bool(config.publish_domains))
        self.publisher: Optional[PolicyPublisher] = None
        self.cache: Optional[PolicyCache] = None
        self.fetcher: Optional[PolicyFetcher] = None
        self.resolver: Optional[PolicyResolver] = None
        self.socketmap: Optional[SocketmapServer] = None
        self.control: Optional[ControlServer] = None

    async def start(self) -> None:
        if self.run_publisher:
            if not self.config.publish_domains:
                raise ConfigError(f"{self.config.source}: [publish.domains]: expected at least one domain to publish")
            self.publisher = PolicyPublisher(self.config)
            await self.publisher.start()
        if self.run_resolver:
            await self._start_resolver()
        else:
            log.info("mtasts %s ready: publisher only, %d domains", __version__, len(self.config.publish_domains))

    async def _start_resolver(self) -> None:
        config = self.config
        dns_client = DnsClient(config.nameservers, config.dns_timeout)
        self.fetcher = PolicyFetcher(dns_client, config.fetch_timeout, config.ca_file)
        self.cache = open_cache(config)
        entries, policies = self.cache.count() if config.cache_backend == "sqlite" else (0, 0)
        await self.fetcher.start()
        self.resolver = PolicyResolver(config, self.cache, dns_client, self.fetcher)
        await self.resolver.start()
        self.control = ControlServer(
            self.resolver,
            config.control_path,
            stats_extra=lambda: {"connections": len(self.socketmap.connections) if self.socketmap else 0},
        )
        await self.control.start()
        self.socketmap = SocketmapServer(self.resolver, config.listen, config.socket_mode)
        await self.socketmap.start()
        where = config.cache_path if config.cache_backend == "sqlite" else "memory only"
        log.info(
            "mtasts %s ready: cache %s (%d entries, %d policies), DNS %s",
            __version__,
            where,
            entries,
            policies,
            ", ".join(dns_client.nameservers) or "system",
        )

    async def close(self) -> None:
        for part in (self.publisher, self.socketmap, self.control, self.resolver, self.fetcher):
            if part is not None:
                await part.close()
        if self.cache is not None:
            self.cache.close()

    def reload(self) -> None:
        """SIGHUP: the file is read once; the publisher takes its policies and certificates,
        the resolver its map profiles, log level and cache timings; the rest needs a restart."""
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            return
        if self.publisher is not None:
            self.publisher.reload(new)
        if self.resolver is None:
            return
        fixed = ("listen", "socket_mode", "nameservers", "dns_timeout", "fetch_timeout", "ca_file",
                 "cache_backend", "cache_path", "memory_entries", "control_socket")
        ignored = [k for k in fixed if getattr(new, k) != getattr(self.config, k) and not (k == "cache_path" and not new.cache_path_explicit)]
        applied = dataclasses.replace(new, **{k: getattr(self.config, k) for k in fixed})
        self.config = applied
        self.resolver.config = applied
        setup_logging(applied.log_level)
        log.info("configuration reloaded from %s", applied.source)
        if ignored:
            log.warning("reload: %s change only on restart", ", ".join(ignored))


async def serve(config: Config, config_path: Optional[str], only: Optional[str] = None) -> int:
    try:
        daemon = Daemon(with_state_dir(config) if only != "publisher" else config, config_path, only)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    try:
        await daemon.start()
    except (ConfigError, StoreError) as exc:
        log.error("%s", exc)
        await daemon.close()
        return 2
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, daemon.reload)
    sd_notify("READY=1")
    await stop.wait()
    sd_notify("STOPPING=1")
    log.info("shutting down")
    await daemon.close()
    return 0
