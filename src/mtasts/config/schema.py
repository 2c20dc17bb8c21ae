"""Every key of the file: how its value is read, what the error says was expected, and
whether a running daemon takes a new value on SIGHUP or only on restart.

A parser takes the TOML value and returns the configuration's value, or raises
ValueError (its text, if any, is added to the message after the expectation).
"""

from __future__ import annotations

import calendar
import datetime
import ipaddress
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

from mtasts.config.endpoint import Endpoint
from mtasts.config.sections import LOG_LEVELS
from mtasts.core.hostname import is_domain
from mtasts.core.override import LEVELS as OVERRIDE_LEVELS
from mtasts.core.override import parse_date
from mtasts.core.policy import Mode
from mtasts.core.postfixcaps import parse_version
from mtasts.core.publication import validate_max_age, validate_mx, validate_rua
from mtasts.core.reply import TESTING_ENFORCE, TESTING_IGNORE, TESTING_LEVELS


class Key(NamedTuple):
    parse: Callable[[Any], Any]
    expected: str
    restart: bool = False  # a running daemon applies a change only when restarted
    required: bool = False


# -- values ----------------------------------------------------------------------------


def positive(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError
    return float(value)


def count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError
    return value


def text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError
    return value


def choice(*choices: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError
        return value

    return parse


def list_of(item: Callable[[Any], Any]) -> Callable[[Any], Tuple[Any, ...]]:
    def parse(value: Any) -> Tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValueError
        return tuple(item(v) for v in value)

    return parse


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
    if not isinstance(value, str) or (
        value and not (value.startswith("/") and value.isascii() and not any(c in value for c in "?# "))
    ):
        raise ValueError
    if value.startswith("/.well-known/mta-sts"):
        raise ValueError  # the policy's own path
    return value


def endpoint(
    kinds: Tuple[str, ...] = ("inet",), default_port: Optional[int] = None, ip_only: bool = False
) -> Callable[[Any], Endpoint]:
    return lambda value: Endpoint.parse(value, kinds, default_port, ip_only)


def optional_endpoint(value: Any) -> Optional[Endpoint]:
    """``"HOST:PORT"``, or ``""`` for none."""
    return None if value == "" else Endpoint.parse(value)


def _publish_listen(value: Any) -> Tuple[Endpoint, ...]:
    listen = list_of(endpoint(("inet", "systemd")))(value)
    if any(e.kind == "systemd" for e in listen) and len(listen) > 1:
        raise ValueError  # systemd passes all the sockets, or none
    return listen


def _postfix_version(value: Any) -> Optional[str]:
    if value == "":
        return None  # as if not set: ask postconf
    if isinstance(value, str) and parse_version(value) is not None:
        return value
    raise ValueError


def _probe_name(value: Any) -> str:
    if value == "." or (isinstance(value, str) and is_domain(value.rstrip("."))):
        return value
    raise ValueError


def _policy_mode(value: Any) -> Mode:
    # Not Mode(value): its "'enforced' is not a valid Mode" would reach the user.
    for mode in Mode:
        if value == mode.value:
            return mode
    raise ValueError


def _max_age(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError
    return validate_max_age(value)


def _strings(item: Callable[[str], Any]) -> Callable[[Any], Tuple[Any, ...]]:
    def parse(value: Any) -> Tuple[Any, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError
        return tuple(item(v) for v in value)

    return parse


def _address(value: str) -> str:
    return str(ipaddress.ip_address(value))


def _reason(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError
    return value.strip()


def date(value: Any) -> float:
    """A UTC date: a TOML date or date-time, or a string such as "2026-12-24T18:00" (a
    duration such as "48h" would restart at every reload)."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
        return float(calendar.timegm(value.timetuple()))
    if isinstance(value, datetime.date):
        return float(calendar.timegm(value.timetuple()))
    if isinstance(value, str):
        try:
            return parse_date(value)
        except ValueError:
            raise ValueError from None  # the key's expectation says it all
    raise ValueError


# -- the sections ------------------------------------------------------------------------

SECONDS = "a positive number of seconds"

SCHEMA: Dict[str, Dict[str, Key]] = {
    "socketmap": {
        "listen": Key(
            list_of(endpoint(("inet", "unix"))),
            "a list of 'inet:HOST:PORT' (or 'HOST:PORT') or 'unix:/absolute/path'",
            restart=True,
        ),
        "socket_mode": Key(_mode, 'an octal mode string such as "0660"', restart=True),
        "max_connections": Key(count, "a positive whole number of connections"),
    },
    "resolver": {
        "nameservers": Key(
            list_of(endpoint(default_port=53, ip_only=True)),
            "a list of IP addresses, 'IPv4:PORT' or '[IPv6]:PORT'",
            restart=True,
        ),
        "timeout": Key(positive, SECONDS),
    },
    "fetch": {
        "timeout": Key(positive, SECONDS),
        "ca_file": Key(text, 'a path to a PEM file, or "" for the system trust store', restart=True),
    },
    "cache": {
        "backend": Key(choice("sqlite", "memory", "redis"), '"sqlite", "memory" or "redis"', restart=True),
        "url": Key(_redis_url, "a redis://, rediss:// or unix:// URL", restart=True),
        "sentinels": Key(
            list_of(endpoint(default_port=26379)),
            "a list of 'HOST:PORT' (or 'HOST', port 26379) of Redis Sentinels",
            restart=True,
        ),
        "sentinel_master": Key(
            text, "the name of the master the sentinels watch (their 'sentinel monitor NAME')", restart=True
        ),
        "prefix": Key(text, "a string that starts every Redis key", restart=True),
        "timeout": Key(positive, "a positive number of seconds (each Redis call)", restart=True),
        "path": Key(text, "a path to the SQLite file", restart=True),
        "memory_entries": Key(count, "a positive whole number", restart=True),
        "txt_recheck": Key(positive, SECONDS),
        "negative_ttl_min": Key(positive, SECONDS),
        "negative_ttl_max": Key(positive, SECONDS),
        "failure_ttl": Key(positive, SECONDS),
        "refresh_concurrency": Key(count, "a positive whole number"),
    },
    "metrics": {
        "listen": Key(optional_endpoint, '"HOST:PORT" such as "127.0.0.1:9461", or "" for none', restart=True),
    },
    "dane": {
        "mode": Key(choice("prefer", "off"), '"prefer" or "off"'),
        "probe": Key(_probe_name, 'a DNS name known to be DNSSEC-signed, such as "."'),
        "min_ttl": Key(positive, SECONDS),
        "max_ttl": Key(positive, SECONDS),
    },
    "postfix": {
        "postconf": Key(text, 'a path to Postfix\'s postconf command, or "" to look on PATH and in /usr/sbin'),
        "config_directory": Key(text, 'Postfix\'s configuration directory (postconf -c), or "" for its default'),
        "version": Key(
            _postfix_version,
            'the version of the Postfix that queries this daemon, such as "3.7.11", or "" to ask postconf',
        ),
        "dnssec": Key(boolean, "true or false (that Postfix has smtp_dns_support_level = dnssec)"),
        "tlsrpt": Key(boolean, "true or false (that Postfix has smtp_tlsrpt_enable = yes)"),
    },
    "control": {
        "socket": Key(text, 'a path for the control socket, or "" for one beside the cache', restart=True),
    },
    "log": {
        "level": Key(choice(*LOG_LEVELS), " or ".join(f'"{x}"' for x in LOG_LEVELS)),
        "format": Key(choice("text", "json"), '"text" (journald-friendly) or "json" (one object per line)'),
    },
    "reports": {
        "path": Key(text, "a path to the SQLite file of received TLSRPT reports"),
        "https_path": Key(_https_path, 'a URL path such as "/tlsrpt", or "" to accept no reports over HTTPS'),
        "max_body": Key(count, "a positive whole number of bytes"),
        "retention_days": Key(count, "a positive whole number of days"),
        "per_client_per_hour": Key(count, "a positive whole number"),
        "max_per_day": Key(count, "a positive whole number of reports"),
        "max_store_bytes": Key(count, "a positive whole number of bytes"),
        "listen": Key(
            optional_endpoint, '"HOST:PORT" such as "127.0.0.1:8462" (the dashboard), or "" for none', restart=True
        ),
        "dkim_authserv_id": Key(
            text, 'the authserv-id of your DKIM verifier\'s Authentication-Results header, or "" not to check'
        ),
    },
    "publish": {
        "listen": Key(
            _publish_listen,
            "a list of 'HOST:PORT', '[IPv6]:PORT' (or 'inet:HOST:PORT'), or [\"systemd\"]",
            restart=True,
        ),
        "ttl": Key(count, "a positive whole number of seconds"),
        "max_connections": Key(count, "a positive whole number"),
        # "domains" holds one table per domain: PUBLISHED_DOMAIN below.
    },
}

# [maps.NAME]: one map profile (``core.reply.MapProfile``).
MAP_PROFILE: Dict[str, Key] = {
    "testing": Key(choice(TESTING_IGNORE, TESTING_ENFORCE), f'"{TESTING_IGNORE}" or "{TESTING_ENFORCE}"'),
    "sni": Key(boolean, "true or false"),
    "tlsrpt": Key(boolean, "true or false (true needs Postfix >= 3.10)"),
    "testing_level": Key(choice(*TESTING_LEVELS), " or ".join(f'"{x}"' for x in TESTING_LEVELS)),
    "dane": Key(boolean, "true or false (true needs Postfix >= 2.11 with smtp_dns_support_level = dnssec)"),
}

# [publish.domains."example.com"]: one published domain (``core.publication.PublishedDomain``).
PUBLISHED_DOMAIN: Dict[str, Key] = {
    "mode": Key(_policy_mode, '"enforce", "testing" or "none"'),
    "mx": Key(_strings(validate_mx), "a list of MX host names or '*.' patterns"),
    "max_age": Key(_max_age, "a whole number of seconds up to 31557600"),
    "tlsrpt_rua": Key(_strings(validate_rua), "a list of mailto: or https: URIs"),
    "cert": Key(text, "a path to a PEM certificate chain"),
    "key": Key(text, "a path to a PEM private key"),
    "host_addresses": Key(_strings(_address), "a list of IP addresses"),
    "host_cname": Key(text, "a host name"),
}

# [overrides."example.com"]: one exemption (``core.override.Override``).
OVERRIDE: Dict[str, Key] = {
    "level": Key(choice(*OVERRIDE_LEVELS), " or ".join(repr(x) for x in OVERRIDE_LEVELS)),
    "until": Key(
        date,
        'a UTC date such as "2026-12-24" or "2026-12-24T18:00" (or no until: in force until removed from the file)',
    ),
    "reason": Key(_reason, "a text that says why (it is logged with every use)", required=True),
    "dane": Key(boolean, "true or false"),
}


def restart_only() -> Tuple[Tuple[str, str], ...]:
    """(section, key) of every key a running daemon applies only when restarted."""
    return tuple((section, key) for section, keys in SCHEMA.items() for key, spec in keys.items() if spec.restart)
