"""The fleet tier: one Redis/Valkey shared by every mtasts of a fleet (``[cache] backend = "redis"``).

Each host keeps its memory tier and its own SQLite store in front; Redis is where hosts
learn from each other. Keys (``PREFIX`` is ``[cache] prefix``):

* ``PREFIX e:DOMAIN``: the entry as JSON, expiring with the policy's validity or the
  hold's, so Redis never serves what the RFC would not.
* ``PREFIX l:DOMAIN``: a short lock: the host holding it discovers, the others wait.
* ``PREFIX o:DOMAIN``: an override (``mtasts override add``), expiring with it.
* channel ``PREFIX events``: ``update DOMAIN HOST``, ``purge DOMAIN|* HOST`` and
  ``override DOMAIN HOST``, so a purge, a refresh or an override on one host holds fleet-wide.

Redis is never on the answer path of a cached lookup, and never a reason to answer TEMP:
every call is bounded by ``timeout``, a failure marks Redis down (one log line) and the
host carries on alone, retrying in the background until it is back (one log line).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple

from mtasts.core.entrycodec import decode_entry, encode_entry, lifetime
from mtasts.core.freshness import CacheEntry
from mtasts.core.override import Override, override_from_json, override_to_json

log = logging.getLogger("mtasts.redis")

# How long a host may hold the discovery lock of a domain, and how long others wait for it.
LOCK_SECONDS = 10.0
# After a failure, Redis is skipped for this long before the next try.
RETRY_SECONDS = 2.0


class SharedCache:
    def __init__(
        self,
        url: str,
        prefix: str,
        timeout: float,
        sentinels: Sequence[Tuple[str, int]] = (),
        sentinel_master: str = "",
    ) -> None:
        import redis.asyncio  # the optional extra: mtasts[redis]
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.retry import Retry

        self.prefix = prefix
        self.timeout = timeout
        self.host_id = f"{socket.gethostname()}:{os.getpid()}"
        # One retry on a connection error: after a Redis restart the pooled connections are
        # dead, and the first command on each must not count as an outage.
        options: Dict[str, Any] = dict(
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )
        if sentinels:
            from redis.asyncio.connection import parse_url
            from redis.asyncio.sentinel import Sentinel

            # Each new connection asks a sentinel for the master; a failover is a connection
            # error (or READONLY from the demoted master) like any outage: the pool is dropped
            # (_failed) and the next call finds the new master.
            credentials: Dict[str, Any] = {
                k: v for k, v in parse_url(url).items() if k in ("db", "username", "password")
            }
            self.url = f"sentinel {sentinel_master} at " + ", ".join(f"{h}:{p}" for h, p in sentinels)
            self._client = Sentinel(list(sentinels), socket_timeout=timeout, socket_connect_timeout=timeout).master_for(
                sentinel_master, **credentials, **options
            )
        else:
            self.url = url
            self._client = redis.asyncio.Redis.from_url(url, **options)
        self._down_since: Optional[float] = None
        self._retry_at = 0.0
        self.errors = 0
        self.hits = 0
        self._listener: Optional[asyncio.Task[None]] = None
        self._reset: Optional[asyncio.Future[None]] = None

    # -- life cycle ----------------------------------------------------------------------

    def start(self, on_event: Callable[[str, str], Awaitable[None]]) -> None:
        self._listener = asyncio.ensure_future(self._listen(on_event))

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await _closing(self._client)

    @property
    def available(self) -> bool:
        return self._down_since is None or time.monotonic() >= self._retry_at

    async def _call(self, what: str, operation, failed=None):
        """Run one Redis operation within the timeout; *failed* (and Redis marked down) on failure."""
        if not self.available:
            operation.close()  # never awaited: close the coroutine quietly
            return failed
        try:
            result = await asyncio.wait_for(operation, self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # redis errors, OSError, timeouts: all mean "carry on alone"
            self._failed(what, exc)
            return failed
        self._recovered()
        return result

    def _recovered(self) -> None:
        if self._down_since is not None:
            log.warning("redis %s is back after %.0f s", self.url, time.monotonic() - self._down_since)
            self._down_since = None
            self._retry_at = 0.0

    def _failed(self, what: str, exc: BaseException) -> None:
        self.errors += 1
        if self._down_since is None:
            self._down_since = time.monotonic()
            # Pooled connections may be dead (a restarted Redis): drop them all now.
            self._reset = asyncio.ensure_future(self._client.connection_pool.disconnect())
            log.error(
                "redis %s unavailable (%s: %s): answering from the local cache until it is back",
                self.url,
                what,
                exc or type(exc).__name__,
            )
        self._retry_at = time.monotonic() + RETRY_SECONDS

    # -- entries -------------------------------------------------------------------------

    def _key(self, kind: str, domain: str) -> str:
        return f"{self.prefix}{kind}:{domain}"

    async def get(self, domain: str) -> Optional[CacheEntry]:
        raw = await self._call("get", self._client.get(self._key("e", domain)))
        entry = decode_entry(raw, domain) if raw else None
        if entry is not None:
            self.hits += 1
        return entry

    async def put(self, entry: CacheEntry, now: float) -> None:
        ttl = lifetime(entry, now)
        if ttl < 1:
            return
        await self._write_and_tell(
            "put", self._key("e", entry.domain), encode_entry(entry), ttl, f"update {entry.domain}"
        )

    async def delete(self, domain: str) -> None:
        await self._write_and_tell("delete", self._key("e", domain), None, None, f"purge {domain}")

    async def _write_and_tell(
        self, what: str, key: str, value: Optional[bytes], ttl: Optional[float], event: str
    ) -> None:
        """Set *key* (expiring after *ttl* seconds) or, with no *value*, delete it; then tell
        the other hosts *event* (``KIND DOMAIN``), in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        if value is None:
            pipe.delete(key)
        else:
            pipe.set(key, value, px=int(ttl * 1000) if ttl is not None else None)
        pipe.publish(f"{self.prefix}events", f"{event} {self.host_id}")
        await self._call(what, pipe.execute())

    async def delete_all(self) -> None:
        async def purge() -> None:
            keys = [k async for k in self._client.scan_iter(match=f"{self.prefix}e:*", count=1000)]
            for i in range(0, len(keys), 1000):
                await self._client.delete(*keys[i : i + 1000])
            await self._client.publish(f"{self.prefix}events", f"purge * {self.host_id}")

        await self._call("purge", purge())

    # -- exemptions (mtasts override), for the whole fleet -----------------------------------

    async def put_override(self, override: Override, now: float) -> None:
        ttl = (override.until - now) if override.until is not None else None
        if ttl is not None and ttl < 1:
            return
        await self._write_and_tell(
            "override",
            self._key("o", override.domain),
            json.dumps(override_to_json(override)).encode(),
            ttl,
            f"override {override.domain}",
        )

    async def delete_override(self, domain: str) -> None:
        await self._write_and_tell("override", self._key("o", domain), None, None, f"override {domain}")

    async def get_override(self, domain: str) -> Optional[Override]:
        raw = await self._call("override", self._client.get(self._key("o", domain)))
        return _override(raw)

    async def overrides(self) -> List[Override]:
        async def scan() -> List[Override]:
            keys = [k async for k in self._client.scan_iter(match=f"{self.prefix}o:*", count=1000)]
            values = await self._client.mget(keys) if keys else []
            return [o for o in (_override(v) for v in values) if o is not None]

        return await self._call("overrides", scan(), failed=[])

    # -- fleet-wide single flight ----------------------------------------------------------

    async def lock(self, domain: str) -> bool:
        """True: this host discovers *domain*. Also True when Redis is down (no one to wait for)."""
        # SET NX answers None when another host holds the lock; a failed call answers True.
        got = await self._call(
            "lock",
            self._client.set(self._key("l", domain), self.host_id, nx=True, px=int(LOCK_SECONDS * 1000)),
            failed=True,
        )
        return bool(got)

    async def wait_for(self, domain: str, timeout: float) -> Optional[CacheEntry]:
        """The entry another host is discovering, if it lands within *timeout*."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.available:
            await asyncio.sleep(0.05)
            entry = await self.get(domain)
            if entry is not None:
                return entry
        return None

    # -- events ----------------------------------------------------------------------------

    async def _listen(self, on_event: Callable[[str, str], Awaitable[None]]) -> None:
        """Follow other hosts' updates and purges; reconnect after any failure."""
        while True:
            pubsub = self._client.pubsub()
            try:
                await asyncio.wait_for(pubsub.subscribe(f"{self.prefix}events"), self.timeout * 4)
                self._recovered()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        continue
                    parts = str(message["data"], "utf-8", "replace").split()
                    if len(parts) == 3 and parts[2] != self.host_id:
                        await on_event(parts[0], parts[1])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed("subscribe", exc)
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                try:
                    await asyncio.wait_for(_closing(pubsub), 1.0)
                except Exception:
                    pass


def _override(raw) -> Optional[Override]:
    if not raw:
        return None
    try:
        return override_from_json(json.loads(raw))
    except (ValueError, TypeError, KeyError):
        return None  # another version's or a damaged value: as if none


def _closing(resource):
    """aclose() where redis-py has it (5.0.1+; close() is deprecated there), else close()."""
    closer = getattr(resource, "aclose", None) or resource.close
    return closer()
