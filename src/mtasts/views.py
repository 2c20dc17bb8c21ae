"""JSON views of cache entries and DANE results, as ``cache show``/``cache list``/``query``
print them, from the daemon (``servers.control``) or from the store with no daemon; and of
received TLSRPT reports, as ``reports summary`` and the dashboard show them."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from mtasts.core.dane import DaneResult, result_to_json
from mtasts.core.freshness import CacheEntry
from mtasts.core.history import Change
from mtasts.core.override import Override, override_to_json
from mtasts.core.reportadvice import advise

if TYPE_CHECKING:
    from mtasts.config import Config
    from mtasts.store.reports import ReportStore


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
    data.update(checked_at=iso_time(result.checked_at), expires_at=iso_time(result.expires_at),
                fresh=result.fresh(now), detail=result.detail or None)
    return data


def iso_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def override_view(override: Override) -> Dict[str, Any]:
    """An override for people: the stored form with a readable end and creation time."""
    data = override_to_json(override)
    data.update(until=iso_time(override.until) if override.until is not None else None,
                created_at=iso_time(override.created_at) if override.created_at else None)
    return data


def change_view(change: Change) -> Dict[str, Any]:
    return {"at": iso_time(change.at), "change": change.kind, "old": change.old, "new": change.new,
            "downgrade": change.downgrade}


def failure_advice(config: "Config", failure: Dict[str, Any],
                   expired: Optional[Dict[str, bool]] = None) -> List[str]:
    """What a stored failure means for our publication (``core.reportadvice``); for a failed
    policy fetch, whether the certificate the publisher serves has expired by now (*expired*:
    what callers advising many failures already read, by certificate file)."""
    published = config.publish.domains.get(failure["domain"])
    cert_expired = False
    if published is not None and published.cert and failure["result_type"] in ("sts-policy-fetch-error",
                                                                                "sts-webpki-invalid"):
        known = expired if expired is not None else {}
        if published.cert not in known:
            from mtasts.servers.publisher import read_certificate

            try:
                known[published.cert] = read_certificate(published.cert).not_after <= time.time()
            except ValueError:
                known[published.cert] = False  # unreadable: the publisher logs that, the advice stays general
        cert_expired = known[published.cert]
    return advise(failure["domain"], failure["result_type"], failure["receiving_mx"],
                  failure["policy_strings"], published, cert_expired)


def advised(config: "Config", failures: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """*failures* with their advice added (each certificate file read once)."""
    expired: Dict[str, bool] = {}
    for f in failures:
        f["advice"] = failure_advice(config, f, expired)
    return failures


def report_summary(config: "Config", store: "ReportStore", since: float, domain: str) -> Dict[str, Any]:
    """Per policy domain and day since *since*, and the latest failures with their advice."""
    from mtasts.store.reports import day_of

    days = store.summary(day_of(since), domain)
    failures = advised(config, store.failures(day_of(since), domain, limit=20))
    return {
        "days": [{"domain": d.domain, "day": d.day, "successful": d.successful, "failed": d.failed,
                  "success_rate": d.success_rate, "failures": d.failures, "reporters": list(d.reporters),
                  "mx_hosts": list(d.mx_hosts)} for d in days],
        "latest_failures": failures,
        "deviations": store.deviation_counts(since),
    }
