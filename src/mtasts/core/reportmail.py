"""TLSRPT reports that come by mail (RFC 8460 §5.3): the report part of a message, and whether
the reporting domain signed it (RFC 8460 §3) by the Authentication-Results the local DKIM
verifier added. Pure: bytes of a message in; every header value ``remotetext.printable``."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

from mtasts.core.remotetext import printable

# The report part's content types: the RFC's, and what some senders write instead.
REPORT_TYPES = frozenset(
    {
        "application/tlsrpt+gzip",
        "application/tlsrpt+json",
        "application/gzip",
        "application/x-gzip",
        "application/json",
        "application/octet-stream",
    }
)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class MailedReport:
    payload: bytes  # the part's decoded body: JSON or gzip
    domain_hint: str  # TLS-Report-Domain
    submitter: str  # TLS-Report-Submitter
    authentication_results: Tuple[str, ...] = ()  # the message's Authentication-Results headers


def report_in_mail(message: bytes) -> Optional[MailedReport]:
    """The report part of an RFC 5322 message, or None when the message carries none (the
    caller accepts it anyway: a bounce must never answer a report, RFC 8460 §5.3.1).
    A part counts when its type is tlsrpt+gzip/+json, or one of the usual wrong types with a
    .json/.json.gz file name (§5.1)."""

    if len(message) > MAX_MESSAGE_BYTES:
        return None
    try:
        return _report_part(email.message_from_bytes(message, policy=email.policy.compat32))
    except RecursionError:
        # The parser and walk() recurse per multipart level: a message nested ~1000 deep is
        # no report mail, whatever it is (a report is one or two levels deep).
        return None


def _report_part(parsed: Any) -> Optional[MailedReport]:
    for part in parsed.walk():
        if part.is_multipart():
            continue
        kind = part.get_content_type()
        name = (part.get_filename() or "").lower()
        if kind.startswith("application/tlsrpt+") or (
            kind in REPORT_TYPES and name.endswith((".json", ".json.gz", ".gz"))
        ):
            payload = part.get_payload(decode=True)
            if not payload:
                continue
            return MailedReport(
                payload=payload,
                domain_hint=_header(parsed, "TLS-Report-Domain"),
                submitter=_header(parsed, "TLS-Report-Submitter"),
                authentication_results=tuple(str(v) for v in parsed.get_all("Authentication-Results") or ()),
            )
    return None


_COMMENT = re.compile(r"\([^()]*\)")


def dkim_passed(results: Sequence[str], authserv_id: str) -> Tuple[str, ...]:
    """The signing domains (``header.d``) of ``dkim=pass`` results in the Authentication-Results
    headers (RFC 8601) that *authserv_id* added; headers of any other id are a sender's word."""
    domains: List[str] = []
    for value in results:
        text = " ".join(_COMMENT.sub(" ", value).split())
        head, _, rest = text.partition(";")
        if not head.split() or head.split()[0].lower() != authserv_id.lower():
            continue
        for result in rest.split(";"):
            tokens = dict(t.split("=", 1) for t in result.split() if "=" in t)
            if tokens.get("dkim", "").lower() != "pass":
                continue
            signer = tokens.get("header.d") or tokens.get("header.i", "").rpartition("@")[2]
            if signer:
                domains.append(signer.lower().rstrip(".").strip('"'))
    return tuple(domains)


def signed_by(reporter: str, signers: Sequence[str]) -> bool:
    """RFC 8460 §3: the report is signed by the reporting domain (or a domain it is within,
    or one within it: an organisation's signing domain)."""
    reporter = reporter.lower().rstrip(".")
    return bool(reporter) and any(
        reporter == d or reporter.endswith("." + d) or d.endswith("." + reporter) for d in signers
    )


def _header(message, name: str) -> str:
    value = message.get(name)
    return printable(str(value).strip().lower(), 255) if value is not None else ""
