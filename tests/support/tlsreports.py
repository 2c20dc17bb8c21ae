"""TLSRPT reports in the shapes senders send (RFC 8460 §4.4, Appendix B and its errata).

Each builder returns the report as a dict; ``as_json``/``as_gzip`` make the bytes. The
shapes reproduce what the RFC and the report parsers' trackers document:

* ``rfc_appendix_b``: the RFC's own example: ``mx-host`` one string (erratum 6241), a
  ``tlsa`` and an ``sts`` policy, start/end as full UTC seconds;
* ``array_sender``: ``mx-host`` an array, one ``sts`` policy, end at the next midnight,
  fractional seconds, gzip;
* ``sparse_sender``: no ``policy-string``, no ``sending-mta-ip``, counts written as strings,
  ``policy-domain`` missing (the mail's TLS-Report-Domain header names it), a
  ``+00:00`` offset.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any, Dict, List


def _sts_strings(domain: str, mx: List[str], mode: str = "enforce") -> List[str]:
    return ["version: STSv1", f"mode: {mode}"] + [f"mx: {m}" for m in mx] + ["max_age: 604800"]


def rfc_appendix_b(
    domain: str = "company-y.example",
    report_id: str = "5065427c-23d3-47ca-b6e0-946ea0e8c4be",
    failed_mx: str = "mx1.company-y.example",
) -> Dict[str, Any]:
    return {
        "organization-name": "Company-X",
        "date-range": {"start-datetime": "2016-04-01T00:00:00Z", "end-datetime": "2016-04-01T23:59:59Z"},
        "contact-info": "sts-reporting@company-x.example",
        "report-id": report_id,
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": _sts_strings(domain, [f"*.mail.{domain}"], "testing"),
                    "policy-domain": domain,
                    "mx-host": f"*.mail.{domain}",
                },
                "summary": {"total-successful-session-count": 5326, "total-failure-session-count": 303},
                "failure-details": [
                    {
                        "result-type": "certificate-expired",
                        "sending-mta-ip": "2001:db8:abcd:0012::1",
                        "receiving-mx-hostname": failed_mx,
                        "failed-session-count": 100,
                    },
                    {
                        "result-type": "starttls-not-supported",
                        "sending-mta-ip": "2001:db8:abcd:0013::1",
                        "receiving-mx-hostname": f"mx2.{domain}",
                        "receiving-ip": "203.0.113.56",
                        "failed-session-count": 200,
                        "additional-information": "https://reports.company-x.example/report_info?id=5065427c-23d3#StarttlsNotSupported",
                    },
                    {
                        "result-type": "validation-failure",
                        "sending-mta-ip": "198.51.100.62",
                        "receiving-ip": "203.0.113.58",
                        "receiving-mx-hostname": f"mx-backup.{domain}",
                        "failed-session-count": 3,
                        "failure-reason-code": "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED",
                    },
                ],
            }
        ],
    }


def array_sender(
    domain: str, report_id: str = "2026-11-29T00:00:00Z_example.net", mx=None, ok: int = 1200, failures=()
) -> Dict[str, Any]:
    mx = mx or [f"mx1.{domain}", f"*.backup.{domain}"]
    return {
        "organization-name": "Array Mail Inc.",
        "date-range": {"start-datetime": "2026-11-29T00:00:00.000Z", "end-datetime": "2026-11-30T00:00:00Z"},
        "contact-info": "smtp-tls-reporting@array.example",
        "report-id": report_id,
        "policies": [
            {
                "policy": {
                    "policy-type": "sts",
                    "policy-string": _sts_strings(domain, mx),
                    "policy-domain": domain,
                    "mx-host": list(mx),
                },
                "summary": {
                    "total-successful-session-count": ok,
                    "total-failure-session-count": sum(f["failed-session-count"] for f in failures),
                },
                **({"failure-details": list(failures)} if failures else {}),
            }
        ],
    }


def sparse_sender(
    report_id: str = "<1234abcd@sparse.example>", ok: str = "77", failed: str = "2", mx_host: str = "mx1.example.net"
) -> Dict[str, Any]:
    return {
        "organization-name": "Sparse Corporation",
        "date-range": {"start-datetime": "2026-11-29T00:00:00+00:00", "end-datetime": "2026-11-29T23:59:59+00:00"},
        "contact-info": "tlsrpt@sparse.example",
        "report-id": report_id,
        "policies": [
            {
                "policy": {"policy-type": "sts", "mx-host": mx_host},
                "summary": {"total-successful-session-count": ok, "total-failure-session-count": failed},
                "failure-details": [
                    {
                        "result-type": "sts-policy-fetch-error",
                        "receiving-mx-hostname": mx_host,
                        "failed-session-count": 2,
                    },
                ],
            }
        ],
    }


def failure(result_type: str, mx: str, sessions: int = 1, ip: str = "192.0.2.7") -> Dict[str, Any]:
    return {
        "result-type": result_type,
        "sending-mta-ip": ip,
        "receiving-mx-hostname": mx,
        "failed-session-count": sessions,
    }


def as_json(report: Dict[str, Any]) -> bytes:
    return json.dumps(report).encode()


def as_gzip(report: Dict[str, Any]) -> bytes:
    return gzip.compress(as_json(report))


def report_mail(
    content_type: str, payload: bytes, filename: str = "r.json.gz", encoding: str = "base64", headers: str = ""
) -> bytes:
    """A report mail as RFC 8460 §5.3 describes it (multipart/report, the TLS-Report-* headers)."""
    body = base64.encodebytes(payload).decode() if encoding == "base64" else payload.decode()
    return (
        "From: reports@array.example\r\nTo: tlsrpt@example.net\r\nSubject: Report Domain: example.net\r\n"
        f"{headers}TLS-Report-Domain: example.net\r\nTLS-Report-Submitter: array.example\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type="tlsrpt"; boundary="b1"\r\n\r\n'
        "--b1\r\nContent-Type: text/plain\r\n\r\nThis is a TLS report.\r\n"
        f'--b1\r\nContent-Type: {content_type}\r\nContent-Disposition: attachment; filename="{filename}"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n{body}\r\n--b1--\r\n"
    ).encode()
