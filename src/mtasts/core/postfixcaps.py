"""Which answers the local Postfix can use, from its version and DNS settings.

An answer Postfix rejects defers the mail; one it silently weakens loses the protection.
What each version accepts, read in Postfix's own source and release notes:

* ``servername=`` in a policy table: Postfix >= 3.4 (``smtp_tls_servername``); older
  versions log "invalid attribute name" and defer (4.7.5).
* ``dane`` / ``dane-only``: Postfix >= 2.11 (TLS_README, DANE). They also need
  ``smtp_dns_support_level = dnssec``: without it ``dane-only`` is an invalid level
  (deferred) and ``dane`` silently becomes ``may`` (postconf(5) smtp_tls_security_level).
* The TLSRPT attributes (``policy_type``, ``mx_host_pattern``, ...): Postfix >= 3.10; they
  are used only with ``smtp_tlsrpt_enable = yes`` (TLSRPT_README).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Tuple

from mtasts.core.reply import MapProfile

Version = Tuple[int, int, int]

SNI_SINCE: Version = (3, 4, 0)
DANE_SINCE: Version = (2, 11, 0)
TLSRPT_SINCE: Version = (3, 10, 0)

# "3.7.11", "2.10.1", "3.10", "3.11-20250101" (a snapshot), "3.8.0-RC1".
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> Optional[Version]:
    match = _VERSION.match(text.strip())
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def version_text(version: Version) -> str:
    return ".".join(str(n) for n in version)


def parse_postconf(output: str) -> Dict[str, str]:
    """``name = value`` lines of ``postconf NAME...`` (unknown names go to stderr)."""
    values: Dict[str, str] = {}
    for line in output.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip()
    return values


@dataclass(frozen=True)
class PostfixInfo:
    """What is known of the Postfix that reads the answers; ``version`` None: unknown."""

    version: Optional[Version] = None
    dnssec: bool = False  # smtp_dns_support_level = dnssec
    tlsrpt: bool = False  # smtp_tlsrpt_enable = yes
    source: str = "unknown"  # "postconf /usr/sbin/postconf", "[postfix] in FILE", ...

    @classmethod
    def from_postconf(cls, values: Mapping[str, str], source: str) -> PostfixInfo:
        return cls(
            version=parse_version(values.get("mail_version", "")),
            dnssec=values.get("smtp_dns_support_level", "").lower() == "dnssec",
            tlsrpt=values.get("smtp_tlsrpt_enable", "").lower() in ("yes", "true", "1"),
            source=source,
        )

    def describe(self) -> str:
        if self.version is None:
            return "Postfix version unknown"
        parts = [f"Postfix {version_text(self.version)}"]
        if self.version >= DANE_SINCE:
            parts.append("smtp_dns_support_level = dnssec" if self.dnssec else "no DNSSEC lookups")
        if self.version >= TLSRPT_SINCE:
            parts.append("TLSRPT on" if self.tlsrpt else "TLSRPT off")
        return ", ".join(parts)


@dataclass(frozen=True)
class Capabilities:
    """The answer features this Postfix uses as intended."""

    sni: bool
    dane: bool
    tlsrpt: bool


def capabilities(info: PostfixInfo) -> Capabilities:
    """Unknown version: the answers every Postfix since 2.10 reads the same way
    (``secure match=...`` only): nothing that defers mail or quietly weakens it."""
    if info.version is None:
        return Capabilities(sni=False, dane=False, tlsrpt=False)
    return Capabilities(
        sni=info.version >= SNI_SINCE,
        dane=info.version >= DANE_SINCE and info.dnssec,
        tlsrpt=info.version >= TLSRPT_SINCE and info.tlsrpt,
    )


def _risk(feature: str, info: PostfixInfo) -> str:
    """What this Postfix does with *feature* when it cannot use it."""
    where = f"Postfix {version_text(info.version)}" if info.version is not None else "this Postfix"
    if feature == "sni":
        return f"{where} rejects servername= (invalid attribute): every enforced domain's mail is deferred"
    if feature == "dane":
        if info.version is not None and info.version < DANE_SINCE:
            return f"{where} has no dane level: DANE domains' mail is deferred (invalid security level)"
        return (
            f"{where} without smtp_dns_support_level = dnssec: dane-only is invalid there (mail deferred)"
            " and dane becomes may (MTA-STS protection lost)"
        )
    if info.version is not None and info.version < TLSRPT_SINCE:
        return f"{where} rejects the TLSRPT attributes (invalid attribute name): enforced domains' mail is deferred"
    return f"{where}: the TLSRPT attributes are not used (smtp_tlsrpt_enable = no)"


FEATURES = ("sni", "dane", "tlsrpt")


def fit_profile(name: str, profile: MapProfile, info: PostfixInfo) -> Tuple[MapProfile, List[str]]:
    """*profile* with each feature not set in the file taken from what Postfix can use,
    and a warning for each explicit setting that Postfix would defer on or weaken."""
    caps = capabilities(info)
    changes = {}
    warnings = []
    for feature in FEATURES:
        able = getattr(caps, feature)
        if feature not in profile.explicit:
            changes[feature] = able
        elif getattr(profile, feature) and not able and info.version is not None:
            warnings.append(f"[maps.{name}] {feature} = true: {_risk(feature, info)}")
    return replace(profile, **changes), warnings


def fit_profiles(
    maps: Mapping[str, MapProfile], default: MapProfile, info: PostfixInfo
) -> Tuple[Dict[str, MapProfile], MapProfile, List[str]]:
    """Every configured profile and the default one fitted to *info*."""
    fitted: Dict[str, MapProfile] = {}
    warnings: List[str] = []
    for name, profile in maps.items():
        fitted[name], found = fit_profile(name, profile, info)
        warnings += found
    fitted_default = fitted["default"] if "default" in maps else fit_profile("default", default, info)[0]
    return fitted, fitted_default, warnings
