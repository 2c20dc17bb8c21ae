"""From a Postfix ``smtp_tls_policy_maps`` key to the MTA-STS Policy Domain.

Keys are the next hop: ``example.com``, ``[relay.example]:587``, ``relay.example:25``,
or, after a miss, Postfix's parent-domain probes ``.example.com`` (postconf(5)).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import Optional

from mtasts.core.hostname import MAX_NAME_LENGTH, is_domain, looks_like_ip


# What Postfix sends almost always (its policy-map keys are case-folded): a lower-case
# name of valid labels whose last label has a letter (so it is no IPv4 address). Such a key
# is its own Policy Domain, in under a microsecond and with no memo that a working set of
# 100k domains would thrash (and whose memory would grow with it).
_PLAIN = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?=[a-z0-9-]*[a-z])[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
# Everything else (brackets, ports, upper case, IDN, trailing dots) is rare: a small memo.
KEY_MEMO_SIZE = 1024


def policy_domain(key: str) -> Optional[str]:
    """The Policy Domain to look up for *key*, or None when there must be no lookup."""
    if len(key) <= MAX_NAME_LENGTH and _PLAIN.fullmatch(key):
        return key
    return _normalised(key)


@functools.lru_cache(maxsize=KEY_MEMO_SIZE)
def _normalised(key: str) -> Optional[str]:
    """The general case of ``policy_domain``.

    None for: Postfix's ``.parent`` probes (RFC 8461 §3.4 forbids parent fallback),
    address literals and IP addresses (§3.4), single-label names, and anything that
    is no valid domain. ``[host]`` and ``[host]:port`` are looked up as ``host``
    (the smart-host case of §3.4).
    """
    host = key.strip()
    if not host or host.startswith("."):
        return None
    if host.startswith("["):
        close = host.find("]")
        if close < 0:
            return None
        rest = host[close + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        host = host[1:close]
    elif host.count(":") == 1:
        host, _, port = host.partition(":")
        if not port.isdigit():
            return None
    if host.endswith("."):
        host = host[:-1]
    if _is_ip_literal(host):
        return None
    host = host.lower()
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    if not is_domain(host) or "." not in host or looks_like_ip(host):
        return None
    return host


def _is_ip_literal(host: str) -> bool:
    if host.lower().startswith("ipv6:"):
        return True
    if ":" not in host and not host[-1:].isdigit():
        return False  # IPv4 ends in a digit, IPv6 has colons: skip the costly parse
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
