"""Where the daemon keeps its state, and the cache tiers opened there: memory, the SQLite
store, and the fleet's shared Redis/Valkey. The one place that opens them, for the daemon and
for the commands that work on a stopped daemon's store (``offline_resolver``)."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import AsyncIterator

from mtasts.config import SYSTEM_STATE_DIR, Config, user_state_dir, with_values
from mtasts.errors import ConfigError, StoreError
from mtasts.net.dns import DnsClient
from mtasts.net.fetch import PolicyFetcher
from mtasts.resolver import PolicyResolver
from mtasts.store.fleet import FleetCache
from mtasts.store.sqlite import SqliteStore
from mtasts.store.tiered import PolicyCache

log = logging.getLogger("mtasts")


def with_state_dir(config: Config) -> Config:
    """Make sure the cache directory exists; fall back to a per-user one when the
    default system directory cannot be created (an ordinary user running the daemon).

    A directory that exists but cannot be written (a read-only file system, another owner)
    does not stop the start: refusing would defer all mail. The store then fails to open and
    the cache runs in memory (an ERROR says what to fix), and so may the control socket."""
    if config.cache.backend == "memory" and config.control.socket:
        return config
    directory = os.path.dirname(config.cache.path)
    explicit = "path" in config.cache.given or directory != SYSTEM_STATE_DIR
    try:
        os.makedirs(directory, mode=0o750, exist_ok=True)
    except OSError as exc:
        if explicit:
            raise ConfigError(
                f"{config.source}: [cache] path: cannot create or write {directory}: {exc.strerror or exc}"
            ) from None
    else:
        if os.access(directory, os.W_OK) or explicit or os.geteuid() == 0:
            return config
    fallback = user_state_dir()
    try:
        os.makedirs(fallback, mode=0o700, exist_ok=True)
    except OSError as exc:  # a user without a home directory (nobody, a service account)
        raise ConfigError(
            f"{config.source}: [cache] path: {directory} is not writable for this user and {fallback} cannot be"
            f" created ({exc.strerror or exc}); set [cache] path to a directory this user can write"
        ) from None
    path = os.path.join(fallback, os.path.basename(config.cache.path))
    log.info("%s is not writable for this user; using %s", directory, fallback)
    return with_values(config, "cache", path=path)


def open_cache(config: Config, shared=None) -> PolicyCache:
    """The cache tiers: memory, the SQLite store, and with *shared* (``open_shared``) the fleet's."""
    # "redis" keeps the local SQLite store too: a Redis restart loses nothing a host needs.
    store = None
    if config.cache.backend != "memory":
        try:
            store = SqliteStore(config.cache.path)
        except StoreError as exc:
            # Refusing to start would defer all mail (Postfix gets "connection refused"):
            # answer from memory, relearning policies, and say loudly what to fix.
            log.error("%s; running with the memory cache only (policies are not kept across restarts)", exc)
    if shared is not None:
        return FleetCache(config.cache.memory_entries, store, shared)
    return PolicyCache(config.cache.memory_entries, store)


def open_shared(config: Config):
    if config.cache.backend != "redis":
        return None
    try:
        from mtasts.store.shared import SharedCache

        return SharedCache(
            config.cache.url,
            config.cache.prefix,
            config.cache.timeout,
            [e.address for e in config.cache.sentinels],
            config.cache.sentinel_master,
        )
    except ImportError:
        raise ConfigError(
            f"{config.source}: [cache] backend: \"redis\" needs the redis package (pip install 'mtasts[redis]')"
        ) from None


@contextlib.asynccontextmanager
async def offline_resolver(config: Config) -> AsyncIterator[PolicyResolver]:
    """A resolver over the store of a daemon that is not running (``mtasts cache`` and
    ``override`` then work on its file), with no listener of its own."""
    cache = open_cache(config)
    dns_client = DnsClient(config.resolver.servers, config.resolver.timeout)
    fetcher = PolicyFetcher(dns_client, config.fetch.timeout, config.fetch.ca_file)
    await fetcher.start()
    resolver = PolicyResolver(config, cache, dns_client, fetcher)
    await resolver.start()
    try:
        yield resolver
    finally:
        await resolver.close()
        await fetcher.close()
        cache.close()
