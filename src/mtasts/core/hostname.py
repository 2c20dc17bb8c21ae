"""Host names as RFC 5321 §4.1.2 ``Domain`` defines them, and MX patterns (RFC 8461 §4.1)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

# Let-dig [Ldh-str]: letters, digits, inner hyphens; 63 octets per label (RFC 1035 §2.3.4).
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
# RFC 1035 §2.3.4: 255 octets on the wire, 253 characters in text.
MAX_NAME_LENGTH = 253


def is_domain(name: str) -> bool:
    """True for an ASCII RFC 5321 ``Domain`` (no trailing dot)."""
    if not name or len(name) > MAX_NAME_LENGTH:
        return False
    return all(_LABEL.match(label) for label in name.split("."))


def looks_like_ip(name: str) -> bool:
    """True when the last label is all digits: an IPv4 address, never a host name.

    No top-level domain is numeric (RFC 3696 §2), so such a "Domain" cannot name an MX.
    """
    return name.rsplit(".", 1)[-1].isdigit()


@dataclass(frozen=True)
class MxPattern:
    """One ``mx:`` value of a policy: ``mx1.example.com`` or ``*.example.net``.

    ``text`` is the value verbatim (for TLSRPT); matching is case-insensitive (RFC 8461
    §4.1). Only a value that differs from its normal form (upper case, a trailing dot)
    keeps its own string: the cache holds millions of these.
    """

    __slots__ = ("base", "verbatim", "wildcard")
    base: str  # lower-case name without the "*." prefix
    wildcard: bool
    verbatim: Optional[str]  # None: the text is the normal form

    @property
    def text(self) -> str:
        if self.verbatim is not None:
            return self.verbatim
        return "*." + self.base if self.wildcard else self.base

    @classmethod
    def parse(cls, text: str) -> MxPattern:
        """Parse ``["*."] Domain``; raise ValueError with the reason otherwise."""
        name = text[2:] if text.startswith("*.") else text
        # A trailing dot is not in the ABNF, but it is harmless: accept and drop it.
        if name.endswith("."):
            name = name[:-1]
        if not is_domain(name):
            raise ValueError(f"mx {text!r} is not a host name or '*.' pattern")
        if looks_like_ip(name):
            raise ValueError(f"mx {text!r} is an IP address, not an MX host name")
        wildcard = text.startswith("*.")
        base = name.lower()
        normal = "*." + base if wildcard else base
        return cls(base=base, wildcard=wildcard, verbatim=None if normal == text else text)

    def matches(self, mx_host: str) -> bool:
        """RFC 8461 §4.1: literal match, or a wildcard covering exactly one left-most label."""
        host = mx_host.lower()
        if host.endswith("."):
            host = host[:-1]
        if not self.wildcard:
            return host == self.base
        head, dot, rest = host.partition(".")
        return bool(head) and dot == "." and rest == self.base

    @property
    def postfix_match(self) -> str:
        """The ``match=`` element: ``.x`` for ``*.x`` (Postfix's own subdomain syntax)."""
        return "." + self.base if self.wildcard else self.base
