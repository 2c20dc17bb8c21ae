"""The configuration as values: one frozen object per TOML section, named and shaped as in
the file, with the embedded defaults. ``given``: the keys the file set (not compared)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Dict, FrozenSet, Optional, Tuple

from mtasts.config.endpoint import Endpoint
from mtasts.core.override import Override
from mtasts.core.publication import PublishedDomain
from mtasts.core.reply import MapProfile

DEFAULT_CONFIG_PATH = "/etc/mtasts/mtasts.toml"
SYSTEM_STATE_DIR = "/var/lib/mtasts"
DEFAULT_CACHE_PATH = SYSTEM_STATE_DIR + "/cache.sqlite3"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class SocketmapSection:
    listen: Tuple[Endpoint, ...] = (Endpoint("inet", host="127.0.0.1", port=8461),)
    socket_mode: int = 0o660
    # Postfix holds one connection per smtp(8) process and map (default_process_limit 100);
    # past this the longest idle connection is closed (Postfix reconnects on its next lookup).
    max_connections: int = 1024
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class ResolverSection:
    nameservers: Tuple[Endpoint, ...] = ()  # empty: the system's (resolv.conf)
    timeout: float = 5.0
    given: FrozenSet[str] = field(default=frozenset(), compare=False)

    @property
    def servers(self) -> Tuple[Tuple[str, int], ...]:
        """The nameservers as (address, port), as ``net.dns.DnsClient`` takes them."""
        return tuple(e.address for e in self.nameservers)


@dataclass(frozen=True)
class FetchSection:
    timeout: float = 15.0
    ca_file: str = ""
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class CacheSection:
    backend: str = "sqlite"
    path: str = DEFAULT_CACHE_PATH
    url: str = "redis://127.0.0.1:6379/0"
    # Redis Sentinel: where the sentinels are and the name of the master they watch; the
    # url then gives only the database, user and password.
    sentinels: Tuple[Endpoint, ...] = ()
    sentinel_master: str = ""
    prefix: str = "mtasts:"
    timeout: float = 0.25
    memory_entries: int = 100000
    txt_recheck: float = 60.0
    negative_ttl_min: float = 300.0
    negative_ttl_max: float = 3600.0
    failure_ttl: float = 60.0
    refresh_concurrency: int = 16
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class MetricsSection:
    listen: Optional[Endpoint] = None
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class DaneSection:
    mode: str = "prefer"
    probe: str = "."
    min_ttl: float = 60.0
    max_ttl: float = 3600.0
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class PostfixSection:
    """The Postfix that reads the answers. ``version`` None: ask ``postconf``; ``dnssec``
    and ``tlsrpt`` None: not said (that Postfix then counts as without them)."""

    postconf: str = ""
    config_directory: str = ""
    version: Optional[str] = None
    dnssec: Optional[bool] = None
    tlsrpt: Optional[bool] = None
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class ControlSection:
    socket: str = ""
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class LogSection:
    level: str = "info"
    format: str = "text"
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class PublishSection:
    listen: Tuple[Endpoint, ...] = (Endpoint("inet", host="0.0.0.0", port=443), Endpoint("inet", host="::", port=443))
    ttl: int = 3600
    max_connections: int = 2000
    domains: Dict[str, PublishedDomain] = field(default_factory=dict)
    given: FrozenSet[str] = field(default=frozenset(), compare=False)

    @property
    def systemd(self) -> bool:
        """``listen = ["systemd"]``: the sockets come from systemd (LISTEN_FDS)."""
        return any(e.kind == "systemd" for e in self.listen)


@dataclass(frozen=True)
class ReportsSection:
    """TLSRPT reports received for the [publish.domains] (RFC 8460)."""

    path: str = ""  # "": reports.sqlite3 beside the cache
    https_path: str = "/tlsrpt"  # POST path on the policy host; "" to accept none over HTTPS
    max_body: int = 1024 * 1024  # bytes of one POST body (gzip); the JSON inside is bounded apart
    retention_days: int = 180
    per_client_per_hour: int = 60  # POSTs from one address (an IPv6 /64) per hour
    max_per_day: int = 10000  # reports kept per UTC day (HTTPS and mail, broken ones too)
    max_store_bytes: int = 1024**3  # the report store's size at which new reports are refused
    listen: Optional[Endpoint] = None  # the dashboard (loopback); None: no dashboard
    # Mailed reports must be DKIM-signed by the reporter (RFC 8460 §3): the authserv-id of the
    # Authentication-Results header the local DKIM verifier adds; "": not checked.
    dkim_authserv_id: str = ""
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class Config:
    source: str = "<embedded defaults>"
    socketmap: SocketmapSection = SocketmapSection()
    resolver: ResolverSection = ResolverSection()
    fetch: FetchSection = FetchSection()
    cache: CacheSection = CacheSection()
    metrics: MetricsSection = MetricsSection()
    dane: DaneSection = DaneSection()
    postfix: PostfixSection = PostfixSection()
    control: ControlSection = ControlSection()
    log: LogSection = LogSection()
    reports: ReportsSection = ReportsSection()
    maps: Dict[str, MapProfile] = field(default_factory=lambda: {"postfix": MapProfile()})
    default_profile: MapProfile = field(default_factory=MapProfile)
    publish: PublishSection = PublishSection()
    # [overrides."domain"]: exemptions set in the file (they end only where "until" says).
    overrides: Dict[str, Override] = field(default_factory=dict)

    def profile(self, map_name: str) -> Optional[MapProfile]:
        return self.maps.get(map_name)

    @property
    def reports_path(self) -> str:
        if self.reports.path:
            return self.reports.path
        return os.path.join(os.path.dirname(self.cache.path), "reports.sqlite3")

    @property
    def control_path(self) -> str:
        if self.control.socket:
            return self.control.socket
        return os.path.join(os.path.dirname(self.cache.path), "control.sock")


def with_values(config: Config, section: str, **values: Any) -> Config:
    """*config* with *values* changed in one *section* (``with_values(c, "cache", path=...)``)."""
    return replace(config, **{section: replace(getattr(config, section), **values)})
