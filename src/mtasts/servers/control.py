"""The local control socket: ``mtasts cache ...`` talks to a running daemon here.

One JSON object per line each way. The socket is a unix socket with mode 0600 (plus
group when the daemon's directory says so), so only the daemon's user and root use it.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import time
from typing import Any, Callable, Dict, Optional

from mtasts.core.nexthop import policy_domain
from mtasts.core.override import LEVELS, Override
from mtasts.errors import ConfigError
from mtasts.resolver import PolicyResolver
from mtasts.servers.jsonviews import change_view, entry_to_json, iso_time, override_view
from mtasts.servers.unixsocket import OwnedUnixSocket

log = logging.getLogger("mtasts.control")

MAX_LINE = 64 * 1024
# Domains per "warm" request: the CLI sends a long list in batches (each within MAX_LINE).
WARM_BATCH = 200


class ControlServer:
    def __init__(
        self, resolver: PolicyResolver, path: str, stats_extra=None, on_handover=None, takeover: bool = False
    ) -> None:
        self.resolver = resolver
        self.path = path
        self._server: Optional[asyncio.AbstractServer] = None
        self._stats_extra: Callable[[], Dict[str, Any]] = stats_extra or dict
        # "handover": a daemon started with --takeover listens now; this one drains and stops.
        self._on_handover = on_handover
        self._takeover = takeover
        self._socket = OwnedUnixSocket(path, 0o600, "[control] socket")

    async def start(self) -> None:
        try:
            sock = self._socket.bind(replace=self._takeover)
        except OSError as exc:
            if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
                # The directory cannot be written (a read-only file system): lookups go on,
                # only the command line cannot reach this daemon.
                log.error(
                    "[control] socket: cannot listen on %s: %s; `mtasts cache`, `override` and `stats`"
                    " cannot reach this daemon (set [control] socket to a writable place)",
                    self.path,
                    exc.strerror or exc,
                )
                return
            hint = " (is another mtasts running with this cache?)" if exc.errno == errno.EADDRINUSE else ""
            raise ConfigError(f"[control] socket: cannot listen on {self.path}: {exc.strerror or exc}{hint}") from None
        self._server = await asyncio.start_unix_server(self._handle, sock=sock, limit=MAX_LINE)
        log.debug("control socket at %s", self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._socket.remove()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("not an object")
                    response = await self.execute(request)
                except (ValueError, KeyError, TypeError) as exc:
                    response = {"ok": False, "error": f"bad request: {exc}"}
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # our fault or the store's: say so, keep the socket
                    self.resolver.counters.internal_errors += 1
                    log.exception("control command %r failed", request.get("command"))
                    response = {"ok": False, "error": f"internal error: {exc!r} (see the daemon's log)"}
                writer.write(json.dumps(response).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()

    def _add_override(self, domain: str, request: Dict[str, Any], now: float) -> Dict[str, Any]:
        level, until, reason = request.get("level", "may"), request.get("until"), request.get("reason")
        if level not in LEVELS:
            return {"ok": False, "error": f"level must be one of {', '.join(LEVELS)}, not {level!r}"}
        if isinstance(until, bool) or not isinstance(until, (int, float)) or until <= now:
            return {"ok": False, "error": "an override from the command line needs an end in the future (--until)"}
        if not isinstance(reason, str) or not reason.strip():
            return {"ok": False, "error": "an override needs a reason (--reason): it is logged with every use"}
        current = self.resolver.overrides.get(domain)
        if current is not None and current.source != "cli":
            return {"ok": False, "error": f"{domain} has an override in {current.source}: change it there"}
        override = Override(domain, level, float(until), reason.strip(), bool(request.get("dane", False)), "cli", now)
        self.resolver.add_override(override)
        return {"ok": True, "override": override_view(override)}

    def _export(self, map_name: str, now: float) -> Dict[str, Any]:
        """The current answers as smtp_tls_policy_maps lines (``domain level attributes``)."""
        profile = self.resolver.profile(map_name)
        lines, unchecked, first_expiry = [], [], None
        for entry in self.resolver.cache.entries():
            cached = entry.valid_policy(now)
            if cached is None:
                continue
            answer = self.resolver.cached_answer(entry, profile)
            if answer is None:
                unchecked.append(entry.domain)
            elif answer.startswith(b"OK "):
                lines.append(f"{entry.domain} {answer[3:].decode()}")
                if first_expiry is None or cached.expires_at < first_expiry:
                    first_expiry = cached.expires_at
        return {
            "map": map_name,
            "lines": lines,
            "dane_unchecked": unchecked,
            "first_expiry": iso_time(first_expiry) if first_expiry is not None else None,
        }

    async def execute(self, request: Dict[str, Any]) -> Dict[str, Any]:
        command = request.get("command")
        cache = self.resolver.cache
        now = self.resolver.now()
        if command == "stats":
            if cache.store is not None:  # a full scan of the store: off the event loop
                entries, policies = await asyncio.get_running_loop().run_in_executor(None, cache.count)
            else:
                entries, policies = cache.count()
            stats = {
                "entries": entries,
                "policies": policies,
                "memory_entries": cache.memory_size,
                "memory_hits": cache.memory_hits,
                "store_hits": cache.store_hits,
                "misses": cache.misses,
                "store_errors": cache.store_errors,
                **self.resolver.counters.snapshot(),  # the same counters /metrics shows
            }
            stats.update(self._stats_extra())
            return {"ok": True, "stats": stats}
        if command == "list":
            return {"ok": True, "entries": [entry_to_json(e, now) for e in cache.entries()]}
        if command == "override_list":
            self.resolver.expire_overrides(now)
            return {
                "ok": True,
                "overrides": [
                    override_view(o) for o in sorted(self.resolver.overrides.values(), key=lambda o: o.domain)
                ],
            }
        if command == "warm":
            keys = request.get("domains")
            if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or len(keys) > WARM_BATCH:
                return {"ok": False, "error": f"warm takes a list of at most {WARM_BATCH} domain names"}
            concurrency = self.resolver.config.cache.refresh_concurrency
            return {"ok": True, "outcome": await self.resolver.warm(keys, concurrency)}
        if command == "export":
            return {"ok": True, **self._export(str(request.get("map", "postfix")), now)}
        if command == "handover":
            if self._on_handover is None:
                return {"ok": False, "error": "this daemon cannot hand over"}
            asyncio.get_running_loop().call_soon(self._on_handover)
            return {"ok": True, "pid": os.getpid()}
        if command == "purge_all":
            return {"ok": True, "purged": await self.resolver.purge_all()}
        domain = policy_domain(str(request.get("domain", "")))
        if domain is None:
            return {"ok": False, "error": f"{request.get('domain')!r} is not a domain that can have a policy"}
        if command == "show":
            entry = cache.peek(domain)  # an admin looking is no lookup: not counted
            override = self.resolver.overrides.get(domain)
            response = {"ok": True, "entry": entry_to_json(entry, now) if entry else None}
            if override is not None and override.active(now):
                response["override"] = override_view(override)
            return response
        if command == "history":
            return {"ok": True, "domain": domain, "changes": [change_view(c) for c in cache.history(domain)]}
        if command == "override_add":
            return self._add_override(domain, request, now)
        if command == "override_remove":
            override = self.resolver.overrides.get(domain)
            if override is not None and override.source != "cli":
                return {
                    "ok": False,
                    "error": f"the override of {domain} is set in {override.source}: remove it there"
                    " and reload (SIGHUP)",
                }
            return {"ok": True, "removed": 1 if self.resolver.remove_override(domain) else 0}
        if command == "purge":
            return {"ok": True, "purged": 1 if await self.resolver.purge(domain) else 0}
        if command == "refresh":
            entry, policy = await self.resolver.refresh_now(domain)
            profile = self.resolver.profile(str(request.get("map", "postfix")))
            answer = await self.resolver.final_answer(entry, policy, profile, recheck_dane=True)
            entry = cache.peek(domain) or entry  # with the DANE result just checked
            return {"ok": True, "entry": entry_to_json(entry, time.time()), "answer": answer.decode()}
        return {"ok": False, "error": f"unknown command {command!r}"}
