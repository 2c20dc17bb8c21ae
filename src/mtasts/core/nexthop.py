"""From a Postfix ``smtp_tls_policy_maps`` key to the MTA-STS Policy Domain.

Keys are the next hop: ``example.com``, ``[relay.example]:587``, ``relay.example:25``,
or, after a miss, Postfix's parent-domain probes ``.example.com`` (postconf(5)).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Optional

import idna

from mtasts.core.hostname import MAX_NAME_LENGTH, is_domain, looks_like_ip

SMTP_PORT = 25


@dataclass(frozen=True)
class NextHop:
    """What a key names: the Policy Domain and, for DANE, how Postfix reaches it.

    ``mx`` is False for ``[host]`` and ``[host]:port``: Postfix connects to the host itself,
    without MX lookup, and looks up TLSA at ``_port._tcp.host`` (RFC 7672 §2.2.2, §3.2.2).
    """

    domain: str
    mx: bool = True
    port: int = SMTP_PORT

    @property
    def default(self) -> bool:
        """The shape of a plain recipient domain: MX lookup, port 25."""
        return self.mx and self.port == SMTP_PORT


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
    hop = _normalised(key)
    return hop.domain if hop is not None else None


def next_hop(key: str) -> Optional[NextHop]:
    """*key* as Postfix uses it: the Policy Domain, MX lookup or not, and the port."""
    if len(key) <= MAX_NAME_LENGTH and _PLAIN.fullmatch(key):
        return NextHop(key)
    return _normalised(key)


@functools.lru_cache(maxsize=KEY_MEMO_SIZE)
def _normalised(key: str) -> Optional[NextHop]:
    """The general case of ``next_hop``.

    None for: Postfix's ``.parent`` probes (RFC 8461 §3.4 forbids parent fallback),
    address literals and IP addresses (§3.4), single-label names, and anything that
    is no valid domain. ``[host]`` and ``[host]:port`` are looked up as ``host``
    (the smart-host case of §3.4).
    """
    host = key.strip()
    mx, port = True, SMTP_PORT
    if not host or host.startswith("."):
        return None
    if host.startswith("["):
        close = host.find("]")
        if close < 0:
            return None
        rest = host[close + 1 :]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        host, mx = host[1:close], False
        if rest:
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, digits = host.partition(":")
        if not digits.isdigit():
            return None
        port = int(digits)
    if not 0 < port < 65536:
        return None
    if host.endswith("."):
        host = host[:-1]
    if _is_ip_literal(host):
        return None
    host = host.lower() if host.isascii() else _a_labels(host)
    if not host or not is_domain(host) or "." not in host or looks_like_ip(host):
        return None
    return NextHop(host, mx, port)


def _a_labels(host: str) -> str:
    """A U-label name as Postfix's default (``enable_idna2003_compatibility = no``) maps
    it: UTS #46 non-transitional processing, so ``straße.de`` is ``xn--strae-oqa.de``;
    IDNA 2003 would make it ``strasse.de``, another registered name. "" when invalid
    (a ZWJ out of context, a disallowed code point): no lookup rather than a wrong one."""
    try:
        return idna.encode(host, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        return ""


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
