"""Exemptions: an operator's answer for one domain, in force until it expires.

A way out for one broken receiver (a firewall that strips STARTTLS, a partner's expired
certificate) without removing ``smtp_tls_policy_maps`` for everyone. The override's level
(``may``, ``encrypt`` or ``none``, Postfix's own TLS levels) replaces the MTA-STS answer. It
does not lower DANE unless it says so (``dane = true``): where the domain has usable TLSA
records the DANE answer still wins (RFC 8461 §2), since a DANE failure is Postfix's own
verdict and rarely the broken receiver's fault. An override from the command line always
expires; only the configuration file may set one without an end.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from typing import Any, Dict, Optional

from mtasts.core.socketmap import Status, format_reply

LEVELS = ("may", "encrypt", "none")
_DURATION = re.compile(r"(\d+)([mhdw])\Z")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2}))?Z?\Z")


@dataclass(frozen=True)
class Override:
    domain: str
    level: str
    until: Optional[float]  # None: no end (only from the configuration file)
    reason: str
    dane: bool = False  # also over DANE
    source: str = "cli"  # "cli" (stored with the cache) or the configuration file's path
    created_at: float = 0.0

    def active(self, now: float) -> bool:
        return self.until is None or now < self.until

    @property
    def reply(self) -> bytes:
        return format_reply(Status.OK, self.level)


def parse_until(text: str, now: float) -> float:
    """``48h``, ``30m``, ``7d``, ``2w`` from *now*, or a UTC date (``parse_date``) after *now*;
    ValueError with what was expected."""
    text = text.strip()
    duration = _DURATION.match(text)
    if duration:
        seconds = int(duration.group(1)) * _UNITS[duration.group(2)]
        if seconds <= 0:
            raise ValueError("a duration above zero")
        return now + seconds
    if not _DATE.match(text):
        raise ValueError(
            f"expected a duration such as 48h, 30m, 7d, 2w or a UTC date such as 2026-12-24T18:00, got {text!r}"
        )
    when = parse_date(text)
    if when <= now:
        raise ValueError(f"{text!r} is in the past")
    return when


def parse_since(text: str, now: float) -> float:
    """``7d``, ``24h``, ``2w`` before *now*, or a UTC date (``parse_date``); ValueError otherwise."""
    text = text.strip()
    duration = _DURATION.match(text)
    if duration:
        return now - int(duration.group(1)) * _UNITS[duration.group(2)]
    if not _DATE.match(text):
        raise ValueError(f"expected a duration such as 24h, 7d, 2w or a UTC date such as 2026-11-01, got {text!r}")
    return parse_date(text)


def parse_date(text: str) -> float:
    """A UTC date ``2026-12-24`` or ``2026-12-24T18:00`` as a time; ValueError otherwise."""
    date = _DATE.match(text.strip())
    if not date:
        raise ValueError(f"expected a UTC date such as 2026-12-24T18:00, got {text!r}")
    year, month, day, hour, minute = (int(g) if g else 0 for g in date.groups())
    if not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1] and hour < 24 and minute < 60):
        raise ValueError(f"no such date {text!r}")
    return float(calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0)))


def override_to_json(o: Override) -> Dict[str, Any]:
    return {
        "domain": o.domain,
        "level": o.level,
        "until": o.until,
        "reason": o.reason,
        "dane": o.dane,
        "source": o.source,
        "created_at": o.created_at,
    }


def override_from_json(data: Dict[str, Any]) -> Override:
    until = data.get("until")
    return Override(
        str(data["domain"]),
        str(data["level"]),
        float(until) if until is not None else None,
        str(data.get("reason", "")),
        bool(data.get("dane", False)),
        str(data.get("source", "cli")),
        float(data.get("created_at", 0.0)),
    )
