"""A cache entry as JSON, for the fleet's shared Redis tier.

The policy travels as the body that was served (re-parsed on the way in, so a host never
applies what its own parser would refuse), with the id and fetch time; holds, DANE and
the refresh bookkeeping travel as they are.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Optional

from mtasts.core.dane import result_from_json, result_to_json
from mtasts.core.freshness import CachedPolicy, CacheEntry, Hold, implausible
from mtasts.core.policy import parse_policy
from mtasts.errors import PolicyError


def encode_entry(entry: CacheEntry) -> bytes:
    cached = entry.cached
    data: Dict[str, Any] = {
        "domain": entry.domain,
        "hold": entry.hold.value if entry.hold else None,
        "hold_until": entry.hold_until,
        "txt_checked_at": entry.txt_checked_at,
        "refresh_at": entry.refresh_at,
        "failures": entry.failures,
        "last_error": entry.last_error,
        "dane": result_to_json(entry.dane) if entry.dane else None,
    }
    if cached is not None:
        data["policy"] = {
            "id": cached.policy_id,
            "body": cached.body.decode("latin-1"),
            "fetched_at": cached.fetched_at,
        }
    return json.dumps(data, separators=(",", ":")).encode()


def decode_entry(raw: bytes, domain: str) -> Optional[CacheEntry]:
    """*domain*'s entry, or None for anything that is not a well-formed entry for it with a
    valid policy and values of the right kind (``freshness.implausible``; the cache that
    reads it checks the times against its clock): what another host wrote is checked as
    if a stranger had."""
    entry = _decoded(raw)
    if entry is None or implausible(entry, domain, None):
        return None
    return entry


def _decoded(raw: bytes) -> Optional[CacheEntry]:
    try:
        data = json.loads(raw)
        cached = None
        if data.get("policy"):
            p = data["policy"]
            body = p["body"].encode("latin-1")
            cached = CachedPolicy(parse_policy(body), str(p["id"]), float(p["fetched_at"]))
        return CacheEntry(
            domain=str(data["domain"]),
            cached=cached,
            hold=Hold(data["hold"]) if data.get("hold") else None,
            hold_until=float(data["hold_until"]),
            txt_checked_at=float(data["txt_checked_at"]),
            refresh_at=float(data["refresh_at"]),
            failures=_whole(data["failures"]),
            last_error=str(data["last_error"]),
            dane=result_from_json(data["dane"]) if data.get("dane") else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError, PolicyError):
        return None


def _whole(value: Any) -> int:
    """A JSON number that is a whole number (1e400 is none: it is infinity)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or value != value
        or value in (float("inf"), float("-inf"))
        or int(value) != value
    ):
        raise ValueError(f"{value!r} is no whole number")
    return int(value)


def lifetime(entry: CacheEntry, now: float) -> float:
    """Seconds the shared copy should live: the policy's validity, or the hold's."""
    until = entry.hold_until
    if entry.cached is not None:
        until = max(until, entry.cached.expires_at)
    return until - now
