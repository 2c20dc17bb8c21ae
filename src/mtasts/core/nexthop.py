"""From a Postfix ``smtp_tls_policy_maps`` key to the MTA-STS Policy Domain.

Keys are the next hop: ``example.com``, ``[relay.example]:587``, ``relay.example:25``,
or, after a miss, Postfix's parent-domain probes ``.example.com`` (postconf(5)).
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Optional

from mtasts.core.hostname import is_domain, looks_like_ip


# Postfix asks for the same next hops over and over: remember the normalisation of the
# hottest keys (a miss costs a few microseconds; the memo's memory is fixed, ~4 MB).
KEY_MEMO_SIZE = 16384


@functools.lru_cache(maxsize=KEY_MEMO_SIZE)
def policy_domain(key: str) -> Optional[str]:
    """The Policy Domain to look up for *key*, or None when there must be no lookup.

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
