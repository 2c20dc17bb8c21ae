"""Reading the file: every table through its schema (``config.schema``), then the rules
between keys. Every error names the file, the key and what was expected; unknown sections
and keys are errors too: a typo must not silently fall back to a default."""

from __future__ import annotations

import os
import sys
from typing import Any, Dict, Mapping, Optional

from mtasts.config.schema import MAP_PROFILE, OVERRIDE, PUBLISHED_DOMAIN, SCHEMA, Key
from mtasts.config.sections import (
    DEFAULT_CONFIG_PATH,
    CacheSection,
    Config,
    ControlSection,
    DaneSection,
    FetchSection,
    LogSection,
    MetricsSection,
    PostfixSection,
    PublishSection,
    ReportsSection,
    ResolverSection,
    SocketmapSection,
)
from mtasts.core.hostname import is_domain
from mtasts.core.override import Override
from mtasts.core.policy import Mode
from mtasts.core.publication import PublishedDomain
from mtasts.core.reply import MapProfile
from mtasts.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11
    import tomli as tomllib

SECTIONS = {
    "socketmap": SocketmapSection,
    "resolver": ResolverSection,
    "fetch": FetchSection,
    "cache": CacheSection,
    "metrics": MetricsSection,
    "dane": DaneSection,
    "postfix": PostfixSection,
    "control": ControlSection,
    "log": LogSection,
    "reports": ReportsSection,
    "publish": PublishSection,
}
# Limits of keys whose values meet elsewhere: an entry read back is refused past 31 days
# ahead (core.freshness.MAX_AHEAD), so no hold the file asks for may be longer.
MAX_HOLD_SECONDS = 30 * 86400.0
# A published policy's max_age unless the file says: a week, as RFC 8461's examples.
DEFAULT_MAX_AGE = 604800


def read_table(where: str, table: Any, schema: Mapping[str, Key]) -> Dict[str, Any]:
    """*table*'s values read through *schema*; *where* begins every message."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where} must be a table")
    values: Dict[str, Any] = {}
    for key, value in table.items():
        spec = schema.get(key)
        if spec is None:
            raise ConfigError(f"{where} {key}: unknown key; known keys: {', '.join(schema)}")
        try:
            values[key] = spec.parse(value)
        except ValueError as exc:
            detail = f" ({exc})" if str(exc) else ""
            raise ConfigError(f"{where} {key}: expected {spec.expected}, got {value!r}{detail}") from None
    for key, spec in schema.items():
        if spec.required and key not in values:
            raise ConfigError(f"{where} {key}: expected {spec.expected}")
    return values


def parse_config(data: Mapping[str, Any], source: str) -> Config:
    """Build a Config from parsed TOML; raise ConfigError naming source, key, expectation."""
    values: Dict[str, Any] = {"source": source}
    for section, table in data.items():
        if section == "maps":
            values["maps"], default = _maps(table, source)
            if default is not None:
                values["default_profile"] = default
        elif section == "overrides":
            values["overrides"] = _domain_tables(table, source, "overrides", _override)
        elif section in SECTIONS:
            domains = None
            if section == "publish" and isinstance(table, dict) and "domains" in table:
                table = dict(table)
                domains = _domain_tables(table.pop("domains"), source, "publish.domains", _published)
            fields = read_table(f"{source}: [{section}]", table, SCHEMA[section])
            if domains is not None:
                fields["domains"] = domains
            values[section] = SECTIONS[section](given=frozenset(fields), **fields)
        else:
            known = ", ".join(
                f"[{s}]" for s in list(SCHEMA) + ["maps.NAME", "publish.domains.DOMAIN", "overrides.DOMAIN"]
            )
            raise ConfigError(f"{source}: unknown section [{section}]; known sections: {known}")
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
        raise ConfigError(
            f"{source}: [cache] sentinel_master: expected the name the sentinels know the master by"
            " (needed with [cache] sentinels)"
        )
    if cache.sentinel_master and not cache.sentinels:
        raise ConfigError(
            f"{source}: [cache] sentinels: expected at least one 'HOST:PORT' (needed with [cache] sentinel_master)"
        )
    if cache.sentinels and cache.backend != "redis":
        raise ConfigError(
            f'{source}: [cache] sentinels: only used with backend = "redis", got backend = {cache.backend!r}'
        )
    if cache.negative_ttl_min > cache.negative_ttl_max:
        raise ConfigError(
            f"{source}: [cache] negative_ttl_min: expected at most negative_ttl_max "
            f"({cache.negative_ttl_max}), got {cache.negative_ttl_min}"
        )
    for key in ("negative_ttl_max", "failure_ttl"):
        if getattr(cache, key) > MAX_HOLD_SECONDS:
            raise ConfigError(
                f"{source}: [cache] {key}: expected at most {MAX_HOLD_SECONDS:g} seconds (30 days),"
                f" got {getattr(cache, key):g}"
            )
    # dnssec/tlsrpt describe the Postfix named by version; alone they would be ignored.
    for key in ("dnssec", "tlsrpt"):
        if getattr(postfix, key) and postfix.version is None:
            raise ConfigError(f"{source}: [postfix] {key}: needs [postfix] version (without it, postconf says)")
    if dane.min_ttl > dane.max_ttl:
        raise ConfigError(f"{source}: [dane] min_ttl: expected at most max_ttl ({dane.max_ttl}), got {dane.min_ttl}")
    if dane.max_ttl > MAX_HOLD_SECONDS:
        raise ConfigError(
            f"{source}: [dane] max_ttl: expected at most {MAX_HOLD_SECONDS:g} seconds (30 days), got {dane.max_ttl:g}"
        )


def _maps(table: Any, source: str):
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: [maps] must contain tables such as [maps.postfix]")
    maps: Dict[str, MapProfile] = {}
    for name, entries in table.items():
        values = read_table(f"{source}: [maps.{name}]", entries, MAP_PROFILE)
        maps[name] = MapProfile(explicit=frozenset(values), **values)
    return maps, maps.get("default")


def _domain_tables(table: Any, source: str, section: str, build) -> Dict[str, Any]:
    """``[section."example.com"]`` tables: each named by a domain, each read by *build*."""
    if not isinstance(table, dict):
        raise ConfigError(f'{source}: [{section}] must contain tables such as [{section}."example.com"]')
    out: Dict[str, Any] = {}
    for name, entry in table.items():
        domain = name.lower().rstrip(".")
        where = f'{source}: [{section}."{name}"]'
        if not is_domain(domain) or "." not in domain:
            raise ConfigError(f"{where}: {domain!r} is not a domain name (use A-labels for IDN)")
        out[domain] = build(domain, where, entry, source)
    return out


def _override(domain: str, where: str, table: Any, source: str) -> Override:
    values = read_table(where, table, OVERRIDE)
    return Override(
        domain, values.get("level", "may"), values.get("until"), values["reason"], values.get("dane", False), source
    )


def _published(domain: str, where: str, table: Any, source: str) -> PublishedDomain:
    values = read_table(where, table, PUBLISHED_DOMAIN)
    mode = values.get("mode", Mode.ENFORCE)
    if not values.get("mx") and mode is not Mode.NONE:
        raise ConfigError(f"{where} mx: expected at least one MX host for mode {mode.value}")
    return PublishedDomain(domain=domain, **{"mode": mode, "mx": (), "max_age": DEFAULT_MAX_AGE, **values})


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
