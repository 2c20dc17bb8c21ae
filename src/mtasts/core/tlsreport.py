"""TLSRPT aggregate reports (RFC 8460 §4), read as senders really write them.

Pure: bytes in, a ``Report`` out, or ``ReportError`` with the reason. Reports are untrusted
input (§7): the size before and after gunzip is bounded, nesting depth is bounded, and every
field is checked for its type. Known deviations are accepted and named in
``Report.deviations`` (they are counted, and shown with the report):

* ``mx-host`` as one string instead of an array (Appendix B's example does this; RFC 8460
  erratum 6241), and the prose's spelling ``mx-host-pattern``;
* ``domain`` for ``policy-domain`` and ``additional-info-uri`` for ``additional-information``
  (the prose's names, §4.4), a missing ``policy-domain`` (taken from the mail's
  TLS-Report-Domain header when there is one), a missing ``sending-mta-ip`` or
  ``policy-string``;
* counts written as strings ("12"), a single policy object or failure detail instead of an
  array, date-times with any number of fraction digits or a "+00:00" offset.

What a report may make us keep is bounded (anyone can send one): MAX_POLICIES policies,
MAX_FAILURE_DETAILS failure details in all (the rest dropped, and said so), counts up to
MAX_SESSIONS, and every string is ``remotetext.printable``: no control character, no lone
surrogate, at most 500 characters.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import re
import zlib
from dataclasses import dataclass, replace
from typing import Any, Collection, Dict, List, Optional, Tuple

from mtasts.core.remotetext import printable
from mtasts.errors import ReportError

# Result types of the registry (RFC 8460 §6.6); others are kept but named as unknown.
RESULT_TYPES = frozenset(
    {
        "starttls-not-supported",
        "certificate-host-mismatch",
        "certificate-expired",
        "tlsa-invalid",
        "dnssec-invalid",
        "dane-required",
        "certificate-not-trusted",
        "sts-policy-invalid",
        "sts-webpki-invalid",
        "validation-failure",
        "sts-policy-fetch-error",
    }
)
POLICY_TYPES = frozenset({"sts", "tlsa", "no-policy-found"})
GZIP_MAGIC = b"\x1f\x8b"
# A day's report of a large sender is tens of KiB; a few MiB is far beyond any real one.
MAX_REPORT_BYTES = 4 * 1024 * 1024
# JSON deeper than this is no report (the schema is 4 levels deep) and would only cost stack.
MAX_DEPTH = 16
# A report is per reporting organisation and policy domain (RFC 8460 §4): a few policies
# (sts, tlsa, no-policy-found) and failure details per sending and receiving address pair.
# Real reports of the largest senders stay far below these; what is beyond is dropped.
MAX_POLICIES = 100
MAX_FAILURE_DETAILS = 1000
# A day's sessions between two organisations; far more than any MTA makes (2**63 overflowed
# SQLite and gave HTTP 500 and a traceback).
MAX_SESSIONS = 10**12


@dataclass(frozen=True)
class FailureDetail:
    result_type: str
    failed_sessions: int
    sending_mta_ip: str = ""
    receiving_mx_hostname: str = ""
    receiving_mx_helo: str = ""
    receiving_ip: str = ""
    failure_reason_code: str = ""
    additional_information: str = ""


@dataclass(frozen=True)
class PolicyResult:
    policy_type: str
    policy_domain: str
    policy_strings: Tuple[str, ...]
    mx_hosts: Tuple[str, ...]
    successful: int
    failed: int
    failures: Tuple[FailureDetail, ...]


@dataclass(frozen=True)
class Report:
    report_id: str
    organization: str
    contact: str
    start: float  # epoch seconds (UTC)
    end: float
    policies: Tuple[PolicyResult, ...]
    deviations: Tuple[str, ...]

    @property
    def domains(self) -> Tuple[str, ...]:
        return tuple(sorted({p.policy_domain for p in self.policies if p.policy_domain}))


def unpack(body: bytes, limit: int = MAX_REPORT_BYTES) -> bytes:
    """The report's JSON bytes: gunzipped when the body is gzip (whatever the content type
    said), never more than *limit* bytes however well the body compresses."""
    if not body.startswith(GZIP_MAGIC):
        if len(body) > limit:
            raise ReportError(f"report larger than {limit} bytes")
        return body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise ReportError(f"not valid gzip: {exc}") from None
    if len(data) > limit or inflater.unconsumed_tail:
        raise ReportError(f"gzip expands beyond {limit} bytes (refused unread)")
    if not inflater.eof:
        raise ReportError("gzip data ends early")
    return data


def parse_report(data: bytes, domain_hint: str = "") -> Report:
    """Parse the JSON of one report; *domain_hint*: the policy domain the mail's
    TLS-Report-Domain header named, for reports that omit ``policy-domain``."""
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"report larger than {MAX_REPORT_BYTES} bytes")
    _check_depth(data)
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ReportError(f"the report is a JSON {type(document).__name__}, expected an object")
    notes: List[str] = []
    report_id = _text(document, "report-id", notes)
    if not report_id:
        # Duplicates must still be found: a digest of the content stands in for the id.
        report_id = "sha256:" + hashlib.sha256(data).hexdigest()[:32]
        notes.append("no report-id (a digest of the report stands in)")
    date_range = document.get("date-range")
    if not isinstance(date_range, dict):
        raise ReportError("no date-range object")
    start = _time(date_range.get("start-datetime"), "start-datetime")
    end = _time(date_range.get("end-datetime"), "end-datetime")
    if end < start:
        raise ReportError("date-range ends before it starts")
    policies = document.get("policies")
    if isinstance(policies, dict):
        policies = [policies]
        notes.append("policies is an object, not an array")
    if not isinstance(policies, list) or not policies:
        raise ReportError("no policies array")
    if len(policies) > MAX_POLICIES:
        notes.append(f"{len(policies) - MAX_POLICIES} policies beyond the first {MAX_POLICIES} dropped")
        policies = policies[:MAX_POLICIES]
    room = [MAX_FAILURE_DETAILS]  # failure details still kept, across the policies
    results = tuple(_policy(p, i, notes, printable(domain_hint.lower(), 255), room) for i, p in enumerate(policies))
    return Report(
        report_id=printable(report_id, 200),
        organization=printable(_text(document, "organization-name", notes), 200),
        contact=printable(_text(document, "contact-info", notes), 200),
        start=start,
        end=end,
        policies=results,
        deviations=tuple(dict.fromkeys(notes)),  # each once, in order
    )


# Every byte but the four brackets, for bytes.translate: the depth scan then walks only those.
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _check_depth(data: bytes) -> None:
    """Refuse nesting deeper than MAX_DEPTH before json.loads recurses into it (brackets
    inside strings counted too: a real report's strings hold none that deep)."""
    depth = 0
    for byte in data.translate(None, _NOT_BRACKETS):
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_DEPTH:
                raise ReportError(f"JSON nested deeper than {MAX_DEPTH} levels")
        else:
            depth -= 1


def _policy(item: Any, index: int, notes: List[str], domain_hint: str, room: List[int]) -> PolicyResult:
    where = f"policies[{index}]"
    if not isinstance(item, dict):
        raise ReportError(f"{where} is not an object")
    policy = item.get("policy")
    if not isinstance(policy, dict):
        raise ReportError(f"{where}: no policy object")
    policy_type = policy.get("policy-type")
    if not isinstance(policy_type, str) or policy_type not in POLICY_TYPES:
        raise ReportError(f"{where}: policy-type {policy_type!r} is none of sts, tlsa, no-policy-found")
    domain = policy.get("policy-domain")
    if domain is None and isinstance(policy.get("domain"), str):
        domain = policy["domain"]
        notes.append("policy-domain spelled 'domain'")
    if domain is None:
        domain = domain_hint
        notes.append("no policy-domain" + (" (taken from TLS-Report-Domain)" if domain_hint else ""))
    if not isinstance(domain, str):
        raise ReportError(f"{where}: policy-domain is not a string")
    strings = policy.get("policy-string")
    if strings is None:
        strings = []
        if policy_type != "no-policy-found":
            notes.append("no policy-string")
    if isinstance(strings, str):
        strings = strings.splitlines()
        notes.append("policy-string is one string, not an array")
    mx = policy.get("mx-host", policy.get("mx-host-pattern"))
    if "mx-host" not in policy and "mx-host-pattern" in policy:
        notes.append("mx-host spelled 'mx-host-pattern'")
    if isinstance(mx, str):
        mx = [mx]
        notes.append("mx-host is a string, not an array (RFC 8460 erratum 6241)")
    summary = item.get("summary")
    if not isinstance(summary, dict):
        raise ReportError(f"{where}: no summary object")
    details = item.get("failure-details", [])
    if isinstance(details, dict):
        details = [details]
        notes.append("failure-details is an object, not an array")
    if not isinstance(details, list):
        raise ReportError(f"{where}: failure-details is not an array")
    if len(details) > room[0]:
        notes.append(f"failure details beyond the first {MAX_FAILURE_DETAILS} of the report dropped")
        details = details[: room[0]]
    room[0] -= len(details)
    return PolicyResult(
        policy_type=policy_type,
        policy_domain=printable(domain.strip().lower().rstrip("."), 255),
        policy_strings=_strings(strings, f"{where} policy-string"),
        mx_hosts=_strings(mx or [], f"{where} mx-host"),
        successful=_count(
            summary.get("total-successful-session-count"), f"{where} total-successful-session-count", notes
        ),
        failed=_count(summary.get("total-failure-session-count"), f"{where} total-failure-session-count", notes),
        failures=tuple(_failure(d, f"{where} failure-details[{i}]", notes) for i, d in enumerate(details)),
    )


def _failure(item: Any, where: str, notes: List[str]) -> FailureDetail:
    if not isinstance(item, dict):
        raise ReportError(f"{where} is not an object")
    result_type = item.get("result-type")
    if not isinstance(result_type, str) or not result_type:
        raise ReportError(f"{where}: no result-type")
    if result_type not in RESULT_TYPES:
        notes.append(f"result-type {printable(result_type, 60)!r} is not in the RFC 8460 registry")
    if "sending-mta-ip" not in item:
        notes.append("no sending-mta-ip")
    info = item.get("additional-information")
    if info is None and "additional-info-uri" in item:
        info = item["additional-info-uri"]
        notes.append("additional-information spelled 'additional-info-uri'")
    return FailureDetail(
        result_type=printable(result_type, 100),
        failed_sessions=_count(item.get("failed-session-count"), f"{where} failed-session-count", notes),
        sending_mta_ip=_optional(item.get("sending-mta-ip"), where),
        receiving_mx_hostname=_optional(item.get("receiving-mx-hostname"), where).lower().rstrip(".")[:255],
        receiving_mx_helo=_optional(item.get("receiving-mx-helo"), where),
        receiving_ip=_optional(item.get("receiving-ip"), where),
        failure_reason_code=_optional(item.get("failure-reason-code"), where),
        additional_information=_optional(info, where),
    )


def _text(document: Dict[str, Any], key: str, notes: List[str]) -> str:
    value = document.get(key)
    if value is None:
        if key != "report-id":
            notes.append(f"no {key}")
        return ""
    if not isinstance(value, str):
        raise ReportError(f"{key} is not a string")
    return value


def _optional(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ReportError(f"{where}: {str(value)[:40]!r} is not a string")
    return printable(value, 500)


def _strings(value: Any, where: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReportError(f"{where} is not an array of strings")
    return tuple(printable(v, 500) for v in value[:100])


def _count(value: Any, where: str, notes: List[str]) -> int:
    if isinstance(value, str) and value.isdigit() and len(value) <= 20:
        notes.append("a session count written as a string")
        value = int(value)
    if value is None:
        notes.append("a session count is missing (taken as 0)")
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SESSIONS:
        raise ReportError(f"{where}: {str(value)[:40]!r} is not a count (0 to {MAX_SESSIONS})")
    return value


_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?\s*(?:([Zz])|([+-])(\d{2}):?(\d{2}))?\Z"
)


def _time(value: Any, name: str) -> float:
    """An RFC 3339 date-time (§4.4) as epoch seconds; no zone is read as UTC (the RFC's
    reports are UTC), seconds may be missing and the fraction have any length."""
    match = _DATETIME.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise ReportError(f"date-range {name} {str(value)[:40]!r} is not an RFC 3339 date-time")
    year, month, day, hour, minute = (int(match.group(i)) for i in range(1, 6))
    second = int(match.group(6) or 0)
    if not (
        1 <= month <= 12
        and 1 <= day <= calendar.monthrange(year, month)[1]
        and hour < 24
        and minute < 60
        and second <= 60
    ):
        raise ReportError(f"date-range {name} {value[:40]!r} is not a valid date and time")
    moment = calendar.timegm((year, month, day, hour, minute, min(second, 59), 0, 0, 0)) + float(match.group(7) or 0)
    if match.group(9):
        offset = int(match.group(10)) * 3600 + int(match.group(11)) * 60
        moment -= offset if match.group(9) == "+" else -offset
    return moment


# -- what a receiver does with a body ---------------------------------------------------


@dataclass(frozen=True)
class Reading:
    """A received body, read: the report (None when unreadable, with *error*), the JSON or
    the body as it came, and which of the report's policy domains are ours."""

    report: Optional[Report]
    data: bytes
    error: str = ""
    ours: Tuple[str, ...] = ()

    @property
    def foreign(self) -> bool:
        """A readable report about none of our domains: not ours to keep."""
        return self.report is not None and not self.ours


def read_received(body: bytes, accepted: Collection[str], hint: str = "", limit: int = MAX_REPORT_BYTES) -> Reading:
    """*body* read, with only the policies about *accepted* domains kept: a report naming
    thousands of other domains must not become thousands of rows, metrics series and lines
    of the dashboard (its JSON is kept whole for ``reports show``)."""
    try:
        data = unpack(body, limit)
        report = parse_report(data, hint)
    except ReportError as exc:
        return Reading(None, body, str(exc))
    ours = tuple(d for d in report.domains if d in accepted)
    if ours and len(ours) < len(report.domains):
        report = replace(report, policies=tuple(p for p in report.policies if p.policy_domain in accepted))
    return Reading(report, data, "", ours)
