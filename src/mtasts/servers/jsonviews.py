"""JSON views of cache entries, DANE results, overrides and history changes: what the
control socket answers and ``cache show``/``cache list``/``query`` print, from the daemon
or from a stopped daemon's store."""

from __future__ import annotations

import time
from typing import Any, Dict

from mtasts.core.dane import DaneResult, result_to_json
from mtasts.core.freshness import CacheEntry
from mtasts.core.history import Change
from mtasts.core.override import Override, override_to_json


def entry_to_json(entry: CacheEntry, now: float) -> Dict[str, Any]:
    """The cache entry as ``cache show``/``cache list`` print it (also used offline)."""
    cached = entry.cached
    valid = entry.valid_policy(now) is not None
    data: Dict[str, Any] = {
        "domain": entry.domain,
        "state": "policy" if valid else (entry.hold.value if entry.hold else "expired"),
        "policy_id": cached.policy_id if cached else None,
        "mode": cached.policy.mode.value if cached else None,
        "mx": [p.text for p in cached.policy.mx] if cached else [],
        "max_age": cached.policy.max_age if cached else None,
        "fetched_at": iso_time(cached.fetched_at) if cached else None,
        "expires_at": iso_time(cached.expires_at) if cached else None,
        "valid": valid,
        "hold_until": iso_time(entry.hold_until) if entry.hold and entry.hold_until > now else None,
        "txt_checked_at": iso_time(entry.txt_checked_at) if entry.txt_checked_at else None,
        "refresh_at": iso_time(entry.refresh_at) if valid else None,
        "failures": entry.failures,
        "last_error": entry.last_error or None,
    }
    if cached:
        data["policy"] = cached.body.decode("utf-8", "replace")
    if entry.dane is not None:
        data["dane"] = dane_to_json(entry.dane, now)
    return data


def dane_to_json(result: DaneResult, now: float) -> Dict[str, Any]:
    """A DANE result for people: the stored form, with readable times and freshness."""
    data = result_to_json(result)
    data.update(
        checked_at=iso_time(result.checked_at),
        expires_at=iso_time(result.expires_at),
        fresh=result.fresh(now),
        detail=result.detail or None,
    )
    return data


def iso_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def override_view(override: Override) -> Dict[str, Any]:
    """An override for people: the stored form with a readable end and creation time."""
    data = override_to_json(override)
    data.update(
        until=iso_time(override.until) if override.until is not None else None,
        created_at=iso_time(override.created_at) if override.created_at else None,
    )
    return data


def change_view(change: Change) -> Dict[str, Any]:
    return {
        "at": iso_time(change.at),
        "change": change.kind,
        "old": change.old,
        "new": change.new,
        "downgrade": change.downgrade,
    }
