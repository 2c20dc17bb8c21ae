"""The publisher's certificates: read from PEM files, checked to cover the policy host
and not to have expired (RFC 8461 §7.1), and made into a TLS server context per domain.

CPython's own certificate decoder reads the names and expiry, so no X.509 library is
needed at run time.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from typing import List, Mapping, Tuple

from mtasts.core.hostname import MxPattern
from mtasts.core.publication import PublishedDomain


@dataclass(frozen=True)
class CertificateInfo:
    names: Tuple[str, ...]
    not_after: float


def read_certificate(path: str) -> CertificateInfo:
    """Names and expiry of the first certificate in a PEM file.

    Uses CPython's certificate decoder (``ssl._ssl._test_decode_cert``), so no X.509
    library is needed at run time.
    """
    try:
        info = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot read certificate {path}: {exc}") from None
    names = tuple(v.lower() for k, v in info.get("subjectAltName", ()) if k == "DNS")
    return CertificateInfo(names, ssl.cert_time_to_seconds(info["notAfter"]))


def covers(names: Tuple[str, ...], host: str) -> bool:
    """RFC 6125 DNS-ID match: the same one-label wildcard rule as MX patterns (§4.1)."""
    for name in names:
        try:
            if MxPattern.parse(name).matches(host):
                return True
        except ValueError:
            continue  # not a host name or pattern: covers nothing
    return False


def domain_context(d: PublishedDomain, now: float) -> ssl.SSLContext:
    """The TLS context for one domain; ValueError naming what is wrong with its files."""
    if not d.cert or not d.key:
        raise ValueError("cert and key must both be set to serve this domain")
    info = read_certificate(d.cert)
    if not covers(info.names, d.policy_host):
        raise ValueError(
            f"certificate {d.cert} does not cover {d.policy_host} (it covers {', '.join(info.names) or 'no DNS name'})"
        )
    if info.not_after <= now:
        raise ValueError(f"certificate {d.cert} expired on {time.strftime('%Y-%m-%d', time.gmtime(info.not_after))}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # §7.2
    try:
        context.load_cert_chain(d.cert, d.key)
    except ssl.SSLError as exc:
        raise ValueError(f"key {d.key} does not match certificate {d.cert} ({exc.reason or exc})") from None
    except OSError as exc:
        raise ValueError(f"cannot read {exc.filename or d.key}: {exc.strerror}") from None
    return context


def check_domain_files(domains: Mapping[str, PublishedDomain], source: str, now: float) -> List[str]:
    """Problems with the certificates of *domains* (from the file *source*), one line each
    (empty: all good)."""
    problems = []
    for name, d in sorted(domains.items()):
        try:
            domain_context(d, now)
        except ValueError as exc:
            problems.append(f'{source}: [publish.domains."{name}"] cert/key: {exc}')
    return problems
