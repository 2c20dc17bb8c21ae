"""Received TLSRPT reports as ``reports summary``, ``reports show`` and the dashboard show
them: summed per domain and day, each failure with the advice it means for our publication
(``core.reportadvice``)."""

from __future__ import annotations

import time
from typing import Any, Dict, List, Optional

from mtasts.config import Config
from mtasts.core.reportadvice import advise
from mtasts.net.certificate import read_certificate
from mtasts.store.reports import ReportStore, day_of


def failure_advice(config: Config, failure: Dict[str, Any], expired: Optional[Dict[str, bool]] = None) -> List[str]:
    """What a stored failure means for our publication (``core.reportadvice``); for a failed
    policy fetch, whether the certificate the publisher serves has expired by now (*expired*:
    what callers advising many failures already read, by certificate file)."""
    published = config.publish.domains.get(failure["domain"])
    cert_expired = False
    if (
        published is not None
        and published.cert
        and failure["result_type"] in ("sts-policy-fetch-error", "sts-webpki-invalid")
    ):
        known = expired if expired is not None else {}
        if published.cert not in known:
            try:
                known[published.cert] = read_certificate(published.cert).not_after <= time.time()
            except ValueError:
                known[published.cert] = False  # unreadable: the publisher logs that, the advice stays general
        cert_expired = known[published.cert]
    return advise(
        failure["domain"],
        failure["result_type"],
        failure["receiving_mx"],
        failure["policy_strings"],
        published,
        cert_expired,
    )


def advised(config: Config, failures: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """*failures* with their advice added (each certificate file read once)."""
    expired: Dict[str, bool] = {}
    for f in failures:
        f["advice"] = failure_advice(config, f, expired)
    return failures


def report_summary(config: Config, store: ReportStore, since: float, domain: str) -> Dict[str, Any]:
    """Per policy domain and day since *since*, and the latest failures with their advice."""
    days = store.summary(day_of(since), domain)
    failures = advised(config, store.failures(day_of(since), domain, limit=20))
    return {
        "days": [
            {
                "domain": d.domain,
                "day": d.day,
                "successful": d.successful,
                "failed": d.failed,
                "success_rate": d.success_rate,
                "failures": d.failures,
                "reporters": list(d.reporters),
                "mx_hosts": list(d.mx_hosts),
            }
            for d in days
        ],
        "latest_failures": failures,
        "deviations": store.deviation_counts(since),
    }
