"""Configuration: a TOML file over embedded defaults.

Every error names the file, the key and what was expected. Unknown sections and keys
are errors too: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from typing import Any, Dict, FrozenSet, Mapping, Optional, Tuple

from mtasts.core.policy import Mode
from mtasts.core.publication import PublishedDomain, validate_max_age, validate_mx, validate_rua
from mtasts.core.override import Override
from mtasts.core.reply import TESTING_ENFORCE, TESTING_IGNORE, TESTING_LEVELS, MapProfile
from mtasts.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

DEFAULT_CONFIG_PATH = "/etc/mtasts/mtasts.toml"
SYSTEM_STATE_DIR = "/var/lib/mtasts"
DEFAULT_CACHE_PATH = SYSTEM_STATE_DIR + "/cache.sqlite3"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Listener:
    """``inet:HOST:PORT`` or ``unix:/PATH``."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""

    @classmethod
    def parse(cls, spec: str) -> "Listener":
        """``inet:HOST:PORT``, ``unix:/PATH``, or plain ``HOST:PORT`` (as [publish] listen
        and [metrics] listen take it)."""
        kind, _, rest = spec.partition(":")
        if kind == "unix" and rest.startswith("/"):
            return cls("unix", path=rest)
        if kind not in ("inet", "unix"):
            kind, rest = "inet", spec
        if kind == "inet":
            host, colon, port = rest.rpartition(":")
            bracketed = host.startswith("[") and host.endswith("]")
            if bracketed:
                host = host[1:-1]
            # An IPv6 address needs its brackets; anything else with a colon is no host.
            if colon and host and (bracketed or ":" not in host) and port.isdigit() and 0 < int(port) < 65536:
                return cls("inet", host=host, port=int(port))
        raise ValueError("'inet:HOST:PORT', 'HOST:PORT' or 'unix:/absolute/path'")

    def __str__(self) -> str:
        if self.kind == "unix":
            return "unix:" + self.path
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"inet:{host}:{self.port}"


@dataclass(frozen=True)
class Nameserver:
    address: str
    port: int = 53

    @classmethod
    def parse(cls, spec: str) -> "Nameserver":
        import ipaddress

        host, port = spec, 53
        if spec.startswith("["):
            host, _, rest = spec[1:].partition("]")
            if rest:
                if not rest.startswith(":") or not rest[1:].isdigit():
                    raise ValueError("an IP address, 'IPv4:PORT' or '[IPv6]:PORT'")
                port = int(rest[1:])
        elif spec.count(":") == 1:
            host, _, p = spec.partition(":")
            if not p.isdigit():
                raise ValueError("an IP address, 'IPv4:PORT' or '[IPv6]:PORT'")
            port = int(p)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError("an IP address, 'IPv4:PORT' or '[IPv6]:PORT'") from None
        if not 0 < port < 65536:
            raise ValueError("a port between 1 and 65535")
        return cls(host, port)


class _Unset:
    """The value of a key the file does not set (where that differs from any value)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()


# One frozen value object per TOML section, named and shaped as in the file; the
# defaults are the embedded ones. ``given``: the keys the file set (not compared).


@dataclass(frozen=True)
class SocketmapSection:
    listen: Tuple[Listener, ...] = (Listener("inet", host="127.0.0.1", port=8461),)
    socket_mode: int = 0o660
    # Postfix holds one connection per smtp(8) process and map (default_process_limit 100);
    # past this the longest idle connection is closed (Postfix reconnects on its next lookup).
    max_connections: int = 1024
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class ResolverSection:
    nameservers: Tuple[Nameserver, ...] = ()
    timeout: float = 5.0
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


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
    sentinels: Tuple[Tuple[str, int], ...] = ()
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
    listen: Optional[Tuple[str, int]] = None
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
    """The Postfix that reads the answers. UNSET version: ask ``postconf``."""

    postconf: str = ""
    config_directory: str = ""
    version: str = UNSET
    dnssec: bool = UNSET
    tlsrpt: bool = UNSET
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
    listen: Tuple[Tuple[str, int], ...] = (("0.0.0.0", 443), ("::", 443))
    ttl: int = 3600
    max_connections: int = 2000
    domains: Dict[str, PublishedDomain] = field(default_factory=dict)
    given: FrozenSet[str] = field(default=frozenset(), compare=False)


@dataclass(frozen=True)
class ReportsSection:
    """TLSRPT reports received for the [publish.domains] (RFC 8460)."""

    path: str = ""  # "": reports.sqlite3 beside the cache
    https_path: str = "/tlsrpt"  # POST path on the policy host; "" to accept none over HTTPS
    max_body: int = 1024 * 1024  # bytes of one POST body (gzip); the JSON inside is bounded apart
    retention_days: int = 180
    per_client_per_hour: int = 60  # POSTs from one address (an IPv6 /64) per hour
    max_per_day: int = 10000  # reports kept per UTC day (HTTPS and mail, broken ones too)
    max_store_bytes: int = 1024 ** 3  # the report store's size at which new reports are refused
    listen: Optional[Tuple[str, int]] = None  # the dashboard's "HOST:PORT" (loopback); None: no dashboard
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
    default_profile: MapProfile = MapProfile()
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
    def report_limits(self) -> "IntakeLimits":
        from mtasts.store.reports import IntakeLimits

        return IntakeLimits(self.reports.max_per_day, self.reports.max_store_bytes)

    @property
    def control_path(self) -> str:
        if self.control.socket:
            return self.control.socket
        return os.path.join(os.path.dirname(self.cache.path), "control.sock")


def with_values(config: Config, section: str, **values: Any) -> Config:
    """*config* with *values* changed in one *section* (``with_values(c, "cache", path=...)``)."""
    return replace(config, **{section: replace(getattr(config, section), **values)})


# section -> key -> (parser, expectation text); the key is the section object's field
def _positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError
    return value


def _mode(value: Any) -> int:
    if not isinstance(value, str) or not value or len(value) > 4:
        raise ValueError
    mode = int(value, 8)
    if mode > 0o777:
        raise ValueError
    return mode


def _redis_url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError
    return value


def _https_path(value: Any) -> str:
    if not isinstance(value, str) or (value and not (value.startswith("/") and value.isascii()
                                                     and not any(c in value for c in "?# "))):
        raise ValueError
    if value.startswith("/.well-known/mta-sts"):
        raise ValueError  # the policy's own path
    return value


def _sentinel(value: Any) -> Tuple[str, int]:
    """One ``[cache] sentinels`` item: "HOST:PORT", "[IPv6]:PORT" or "HOST" (port 26379)."""
    if not isinstance(value, str) or not value or value.startswith(("inet:", "unix:")):
        raise ValueError
    if ":" not in value or (value.startswith("[") and value.endswith("]")):
        value = f"{value}:26379"
    listener = Listener.parse(value)
    return listener.host, listener.port


def _metrics_listen(value: Any) -> Optional[Tuple[str, int]]:
    """``[metrics] listen``: "HOST:PORT", or "" for none."""
    if value == "":
        return None
    if not isinstance(value, str):
        raise ValueError
    host, _, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError
    return host, int(port)


def _postfix_version(value: Any) -> str:
    from mtasts.core.postfixcaps import parse_version

    if value == "":
        return UNSET  # as if not set: ask postconf
    if isinstance(value, str) and parse_version(value) is not None:
        return value
    raise ValueError


def _probe_name(value: Any) -> str:
    from mtasts.core.hostname import is_domain

    if value == "." or (isinstance(value, str) and is_domain(value.rstrip("."))):
        return value
    raise ValueError


def _choice(*choices: str):
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError
        return value

    return parse


def _list_of(item_parser):
    def parse(value: Any):
        if not isinstance(value, list):
            raise ValueError("a list")
        return tuple(item_parser(v) if isinstance(v, str) else _bad_item(v) for v in value)

    return parse


def _bad_item(v: Any):
    raise ValueError


_SCHEMA: Dict[str, Dict[str, Tuple[Any, str]]] = {
    "socketmap": {
        "listen": (_list_of(Listener.parse), "a list of 'inet:HOST:PORT' (or 'HOST:PORT') or 'unix:/absolute/path'"),
        "socket_mode": (_mode, "an octal mode string such as \"0660\""),
        "max_connections": (_count, "a positive whole number of connections"),
    },
    "resolver": {
        "nameservers": (_list_of(Nameserver.parse), "a list of IP addresses, 'IPv4:PORT' or '[IPv6]:PORT'"),
        "timeout": (_positive, "a positive number of seconds"),
    },
    "fetch": {
        "timeout": (_positive, "a positive number of seconds"),
        "ca_file": (_string, "a path to a PEM file, or \"\" for the system trust store"),
    },
    "cache": {
        "backend": (_choice("sqlite", "memory", "redis"), "\"sqlite\", \"memory\" or \"redis\""),
        "url": (_redis_url, "a redis://, rediss:// or unix:// URL"),
        "sentinels": (_list_of(_sentinel), "a list of 'HOST:PORT' (or 'HOST', port 26379) of Redis Sentinels"),
        "sentinel_master": (_string, "the name of the master the sentinels watch (their 'sentinel monitor NAME')"),
        "prefix": (_string, "a string that starts every Redis key"),
        "timeout": (_positive, "a positive number of seconds (each Redis call)"),
        "path": (_string, "a path to the SQLite file"),
        "memory_entries": (_count, "a positive whole number"),
        "txt_recheck": (_positive, "a positive number of seconds"),
        "negative_ttl_min": (_positive, "a positive number of seconds"),
        "negative_ttl_max": (_positive, "a positive number of seconds"),
        "failure_ttl": (_positive, "a positive number of seconds"),
        "refresh_concurrency": (_count, "a positive whole number"),
    },
    "metrics": {
        "listen": (_metrics_listen, "\"HOST:PORT\" such as \"127.0.0.1:9461\", or \"\" for none"),
    },
    "dane": {
        "mode": (_choice("prefer", "off"), "\"prefer\" or \"off\""),
        "probe": (_probe_name, "a DNS name known to be DNSSEC-signed, such as \".\""),
        "min_ttl": (_positive, "a positive number of seconds"),
        "max_ttl": (_positive, "a positive number of seconds"),
    },
    "postfix": {
        "postconf": (_string, "a path to Postfix's postconf command, or \"\" to look on PATH and in /usr/sbin"),
        "config_directory": (_string, "Postfix's configuration directory (postconf -c), or \"\" for its default"),
        "version": (_postfix_version, "the version of the Postfix that queries this daemon, such as \"3.7.11\","
                    " or \"\" to ask postconf"),
        "dnssec": (_bool, "true or false (that Postfix has smtp_dns_support_level = dnssec)"),
        "tlsrpt": (_bool, "true or false (that Postfix has smtp_tlsrpt_enable = yes)"),
    },
    "control": {
        "socket": (_string, "a path for the control socket, or \"\" for one beside the cache"),
    },
    "log": {
        "level": (_choice(*LOG_LEVELS), " or ".join(f'"{x}"' for x in LOG_LEVELS)),
        "format": (_choice("text", "json"), '"text" (journald-friendly) or "json" (one object per line)'),
    },
    "reports": {
        "path": (_string, "a path to the SQLite file of received TLSRPT reports"),
        "https_path": (_https_path, "a URL path such as \"/tlsrpt\", or \"\" to accept no reports over HTTPS"),
        "max_body": (_count, "a positive whole number of bytes"),
        "retention_days": (_count, "a positive whole number of days"),
        "per_client_per_hour": (_count, "a positive whole number"),
        "max_per_day": (_count, "a positive whole number of reports"),
        "max_store_bytes": (_count, "a positive whole number of bytes"),
        "listen": (_metrics_listen, "\"HOST:PORT\" such as \"127.0.0.1:8462\" (the dashboard), or \"\" for none"),
        "dkim_authserv_id": (_string, "the authserv-id of your DKIM verifier's Authentication-Results header,"
                                      " or \"\" not to check"),
    },
}

_PROFILE_SCHEMA = {
    "testing": (_choice(TESTING_IGNORE, TESTING_ENFORCE), f'"{TESTING_IGNORE}" or "{TESTING_ENFORCE}"'),
    "sni": (_bool, "true or false"),
    "tlsrpt": (_bool, "true or false (true needs Postfix >= 3.10)"),
    "testing_level": (_choice(*TESTING_LEVELS), " or ".join(f'"{x}"' for x in TESTING_LEVELS)),
    "dane": (_bool, "true or false (true needs Postfix >= 2.11 with smtp_dns_support_level = dnssec)"),
}


_SECTIONS = {
    "socketmap": SocketmapSection, "resolver": ResolverSection, "fetch": FetchSection, "cache": CacheSection,
    "metrics": MetricsSection, "dane": DaneSection, "postfix": PostfixSection, "control": ControlSection,
    "log": LogSection, "reports": ReportsSection,
}


def parse_config(data: Mapping[str, Any], source: str) -> Config:
    """Build a Config from parsed TOML; raise ConfigError naming source, key, expectation."""
    values: Dict[str, Any] = {"source": source}
    for section, table in data.items():
        if section == "maps":
            values["maps"], default = _parse_maps(table, source)
            if default is not None:
                values["default_profile"] = default
            continue
        if section == "publish":
            values["publish"] = _parse_publish(table, source)
            continue
        if section == "overrides":
            values["overrides"] = _parse_overrides(table, source)
            continue
        schema = _SCHEMA.get(section)
        if schema is None:
            known = ", ".join(f"[{s}]" for s in list(_SCHEMA) + ["maps.NAME", "publish", "overrides.DOMAIN"])
            raise ConfigError(f"{source}: unknown section [{section}]; known sections: {known}")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        fields: Dict[str, Any] = {}
        for key, value in table.items():
            if key not in schema:
                raise ConfigError(
                    f"{source}: [{section}] {key}: unknown key; known keys: {', '.join(schema)}"
                )
            parser, expected = schema[key]
            try:
                fields[key] = parser(value)
            except ValueError:
                raise ConfigError(
                    f"{source}: [{section}] {key}: expected {expected}, got {value!r}"
                ) from None
        values[section] = _SECTIONS[section](given=frozenset(fields), **fields)
    config = Config(**values)
    _check(config, source)
    return config


def _check(config: Config, source: str) -> None:
    """The rules between keys, once every key has its value."""
    cache, dane, postfix = config.cache, config.dane, config.postfix
    if config.reports.path and not os.path.isabs(config.reports.path):
        raise ConfigError(f"{source}: [reports] path: expected an absolute path, got {config.reports.path!r}")
    if "path" in cache.given and not os.path.isabs(cache.path):
        raise ConfigError(f"{source}: [cache] path: expected an absolute path, got {cache.path!r}")
    if config.socketmap.listen == ():
        raise ConfigError(f"{source}: [socketmap] listen: expected at least one listener")
    if cache.sentinels and not cache.sentinel_master:
        raise ConfigError(f"{source}: [cache] sentinel_master: expected the name the sentinels know the master by"
                          " (needed with [cache] sentinels)")
    if cache.sentinel_master and not cache.sentinels:
        raise ConfigError(f"{source}: [cache] sentinels: expected at least one 'HOST:PORT' (needed with"
                          " [cache] sentinel_master)")
    if cache.sentinels and cache.backend != "redis":
        raise ConfigError(f"{source}: [cache] sentinels: only used with backend = \"redis\", got"
                          f" backend = {cache.backend!r}")
    if cache.negative_ttl_min > cache.negative_ttl_max:
        raise ConfigError(
            f"{source}: [cache] negative_ttl_min: expected at most negative_ttl_max "
            f"({cache.negative_ttl_max}), got {cache.negative_ttl_min}"
        )
    # dnssec/tlsrpt describe the Postfix named by version; alone they would be ignored.
    for key in ("dnssec", "tlsrpt"):
        if getattr(postfix, key) and postfix.version is UNSET:
            raise ConfigError(f"{source}: [postfix] {key}: needs [postfix] version (without it, postconf says)")
    if dane.min_ttl > dane.max_ttl:
        raise ConfigError(
            f"{source}: [dane] min_ttl: expected at most max_ttl ({dane.max_ttl}), got {dane.min_ttl}"
        )


def _parse_maps(table: Any, source: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [maps] must contain tables such as [maps.postfix]")
    maps: Dict[str, MapProfile] = {}
    for name, entries in table.items():
        if not isinstance(entries, dict):
            raise ConfigError(f"{source}: [maps.{name}] must be a table")
        kwargs = {}
        for key, value in entries.items():
            if key not in _PROFILE_SCHEMA:
                raise ConfigError(
                    f"{source}: [maps.{name}] {key}: unknown key; known keys: {', '.join(_PROFILE_SCHEMA)}"
                )
            parser, expected = _PROFILE_SCHEMA[key]
            try:
                kwargs[key] = parser(value)
            except ValueError:
                raise ConfigError(f"{source}: [maps.{name}] {key}: expected {expected}, got {value!r}") from None
        maps[name] = MapProfile(explicit=frozenset(kwargs), **kwargs)
    return maps, maps.get("default")


_OVERRIDE_KEYS = ("level", "until", "reason", "dane")


def _parse_overrides(table: Any, source: str) -> Dict[str, Override]:
    from mtasts.core.override import LEVELS

    if not isinstance(table, dict):
        raise ConfigError(f'{source}: [overrides] must contain tables such as [overrides."example.com"]')
    out: Dict[str, Override] = {}
    for name, entry in table.items():
        domain = name.lower().rstrip(".")
        where = _domain_table(f'{source}: [overrides."{name}"]', domain, entry, _OVERRIDE_KEYS)
        level = entry.get("level", "may")
        if level not in LEVELS:
            raise ConfigError(f"{where} level: expected {' or '.join(repr(x) for x in LEVELS)}, got {level!r}")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{where} reason: expected a text that says why (it is logged with every use)")
        dane = entry.get("dane", False)
        if not isinstance(dane, bool):
            raise ConfigError(f"{where} dane: expected true or false, got {dane!r}")
        until = entry.get("until")
        when: Optional[float] = None
        if until is not None:
            when = _date(until)
            if when is None:
                raise ConfigError(f'{where} until: expected a UTC date such as "2026-12-24" or "2026-12-24T18:00"'
                                  f" (or no until: in force until removed from the file), got {until!r}")
        out[domain] = Override(domain, level, when, reason.strip(), dane, source)
    return out


def _date(value: Any) -> Optional[float]:
    import calendar
    import datetime

    if isinstance(value, datetime.datetime):  # a TOML date-time
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return float(calendar.timegm(value.timetuple()))
    if isinstance(value, datetime.date):
        return float(calendar.timegm(value.timetuple()))
    if isinstance(value, str):  # a date only: a duration ("48h") would restart at every reload
        from mtasts.core.override import parse_date

        try:
            return parse_date(value)
        except ValueError:
            return None
    return None


def _publish_listen_item(spec: Any) -> Tuple[str, int]:
    """One ``[publish] listen`` item: "HOST:PORT", "[IPv6]:PORT", or "systemd"."""
    if not isinstance(spec, str):
        raise ValueError
    if spec == "systemd":  # socket activation: the sockets come from systemd (LISTEN_FDS)
        return ("systemd", 0)
    if spec.startswith("inet:"):  # the [socketmap] listen form
        spec = spec[len("inet:"):]
    host, colon, port = spec.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError
    return host, int(port)


_DOMAIN_KEYS = ("mode", "mx", "max_age", "tlsrpt_rua", "cert", "key", "host_addresses", "host_cname")


def _parse_publish(table: Any, source: str) -> PublishSection:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [publish] must be a table")
    values: Dict[str, Any] = {}
    for key, value in table.items():
        if key == "listen":
            try:
                if not isinstance(value, list):
                    raise ValueError
                values["listen"] = tuple(_publish_listen_item(v) for v in value)
                if ("systemd", 0) in values["listen"] and len(value) > 1:
                    raise ValueError
            except ValueError:
                raise ConfigError(
                    f"{source}: [publish] listen: expected a list of 'HOST:PORT', '[IPv6]:PORT' (or 'inet:HOST:PORT'), or [\"systemd\"], got {value!r}"
                ) from None
        elif key == "ttl":
            try:
                values["ttl"] = _count(value)
            except ValueError:
                raise ConfigError(f"{source}: [publish] ttl: expected a positive whole number of seconds, got {value!r}") from None
        elif key == "max_connections":
            try:
                values["max_connections"] = _count(value)
            except ValueError:
                raise ConfigError(f"{source}: [publish] max_connections: expected a positive whole number, got {value!r}") from None
        elif key == "domains":
            if not isinstance(value, dict):
                raise ConfigError(f'{source}: [publish.domains] must contain tables such as [publish.domains."example.com"]')
            values["domains"] = {
                name.lower(): _parse_domain(name.lower(), entry, source) for name, entry in value.items()
            }
        else:
            raise ConfigError(f"{source}: [publish] {key}: unknown key; known keys: listen, ttl, max_connections, domains")
    return PublishSection(given=frozenset(values), **values)


def _policy_mode(value: Any) -> Mode:
    # Not Mode(value): its "'enforced' is not a valid Mode" would reach the user.
    for mode in Mode:
        if value == mode.value:
            return mode
    raise ValueError


def _domain_table(where: str, domain: str, table: Any, keys: Tuple[str, ...]) -> str:
    """Check a ``[section."domain"]`` table's name, form and keys; return *where* for the
    messages about its values."""
    from mtasts.core.hostname import is_domain

    if not is_domain(domain) or "." not in domain:
        raise ConfigError(f"{where}: {domain!r} is not a domain name (use A-labels for IDN)")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    for key in table:
        if key not in keys:
            raise ConfigError(f"{where} {key}: unknown key; known keys: {', '.join(keys)}")
    return where


def _parse_domain(name: str, table: Any, source: str) -> PublishedDomain:
    where = _domain_table(f'{source}: [publish.domains."{name}"]', name, table, _DOMAIN_KEYS)

    def get(key, parser, expected, default):
        if key not in table:
            return default
        try:
            return parser(table[key])
        except ValueError as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise ConfigError(f"{where} {key}: expected {expected}, got {table[key]!r}{detail}") from None

    def strings(item_parser):
        def parse(value):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError
            return tuple(item_parser(v) for v in value)
        return parse

    mode = get("mode", _policy_mode, '"enforce", "testing" or "none"', Mode.ENFORCE)
    mx = get("mx", strings(validate_mx), "a list of MX host names or '*.' patterns", ())
    if not mx and mode is not Mode.NONE:
        raise ConfigError(f"{where} mx: expected at least one MX host for mode {mode.value}")
    max_age = get("max_age", lambda v: validate_max_age(v) if isinstance(v, int) and not isinstance(v, bool) else _bad_item(v),
                  "a whole number of seconds up to 31557600", 604800)
    rua = get("tlsrpt_rua", strings(validate_rua), "a list of mailto: or https: URIs", ())

    def address(v):
        import ipaddress

        return str(ipaddress.ip_address(v))

    return PublishedDomain(
        domain=name,
        mode=mode,
        mx=mx,
        max_age=max_age,
        tlsrpt_rua=rua,
        cert=get("cert", _string, "a path to a PEM certificate chain", ""),
        key=get("key", _string, "a path to a PEM private key", ""),
        host_addresses=get("host_addresses", strings(address), "a list of IP addresses", ()),
        host_cname=get("host_cname", _string, "a host name", ""),
    )


def load_config(path: Optional[str]) -> Config:
    """Load *path*; with None, the default path if it exists, else embedded defaults."""
    if path is None:
        if not os.path.exists(DEFAULT_CONFIG_PATH):
            return Config()
        path = DEFAULT_CONFIG_PATH
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, path)


def user_state_dir() -> str:
    """Per-user state directory for a daemon that cannot write /var/lib/mtasts."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "mtasts")
