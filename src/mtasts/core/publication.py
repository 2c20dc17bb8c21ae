"""What the publisher serves and asks the admin to put in DNS (RFC 8461 §3, RFC 8460 §3).

Pure: the policy text is generated in canonical form (CRLF, fixed field order), its id is
derived from that text, so editing the policy always changes the id and an unchanged
policy keeps it (RFC 8461 §3.1: the id "MUST uniquely identify a given instance of a
policy"). Records come out as zone-file lines or data for JSON.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Dict, List, Tuple

from mtasts.core.hostname import MxPattern
from mtasts.core.policy import MAX_MAX_AGE, Mode, parse_policy

# 32 hex digits = 128 bits of SHA-256: alphanumeric and within 1*32 (RFC 8461 §3.1).
POLICY_ID_LENGTH = 32
# RFC 8460 §3: these characters must be percent-encoded inside an rua URI.
_RUA_ESCAPES = {",": "%2C", "!": "%21", ";": "%3B", " ": "%20"}
_TXT_CHUNK = 255  # one character-string of a TXT RR (RFC 1035 §3.3)


@dataclass(frozen=True)
class PublishedDomain:
    domain: str
    mode: Mode
    mx: Tuple[str, ...]
    max_age: int
    tlsrpt_rua: Tuple[str, ...] = ()
    cert: str = ""
    key: str = ""
    host_addresses: Tuple[str, ...] = ()  # A/AAAA values for mta-sts.<domain>
    host_cname: str = ""  # or a CNAME target for mta-sts.<domain>

    @property
    def policy_host(self) -> str:
        return "mta-sts." + self.domain


def validate_mx(value: str) -> str:
    """An ``mx`` entry for a published policy; raise ValueError saying what is wrong."""
    if "*" in value and not (value.startswith("*.") and "*" not in value[2:]):
        raise ValueError(f"{value!r}: a wildcard must be a whole leading label, as in '*.example.net'")
    MxPattern.parse(value)  # raises for IP addresses and non-host names
    if value.endswith("."):
        raise ValueError(f"{value!r}: write the name without the trailing dot")
    if not value.isascii():
        raise ValueError(f"{value!r}: write internationalised names as A-labels (xn--...)")
    return value.lower()


def validate_max_age(value: int) -> int:
    if not 0 <= value <= MAX_MAX_AGE:
        raise ValueError(f"{value}: max_age must be between 0 and {MAX_MAX_AGE} seconds")
    return value


def validate_rua(uri: str) -> str:
    if not (uri.startswith("mailto:") or uri.startswith("https:")):
        raise ValueError(f"{uri!r}: a TLSRPT rua must be a mailto: or https: URI (RFC 8460 §3)")
    if len(uri) <= len(uri.split(":", 1)[0]) + 1:
        raise ValueError(f"{uri!r}: empty address")
    return uri


def policy_text(d: PublishedDomain) -> bytes:
    """The policy body in canonical form, checked with the resolver's own parser."""
    lines = ["version: STSv1", f"mode: {d.mode.value}"] + [f"mx: {m}" for m in d.mx] + [f"max_age: {d.max_age}"]
    body = ("\r\n".join(lines) + "\r\n").encode("ascii")
    parse_policy(body)  # what we publish must be what we accept
    return body


def policy_id(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:POLICY_ID_LENGTH]


def sts_record(d: PublishedDomain) -> str:
    return f"v=STSv1; id={policy_id(policy_text(d))}"


def encode_rua(uri: str) -> str:
    scheme, _, rest = uri.partition(":")
    return scheme + ":" + "".join(_RUA_ESCAPES.get(c, c) for c in rest)


def tlsrpt_record(d: PublishedDomain) -> str:
    return "v=TLSRPTv1; rua=" + ",".join(encode_rua(u) for u in d.tlsrpt_rua)


def records(d: PublishedDomain, ttl: int) -> List[Dict[str, object]]:
    """The DNS records to publish for *d*, as dicts (name, type, ttl, value)."""
    out: List[Dict[str, object]] = [
        {"name": f"_mta-sts.{d.domain}.", "type": "TXT", "ttl": ttl, "value": sts_record(d)}
    ]
    if d.tlsrpt_rua:
        out.append({"name": f"_smtp._tls.{d.domain}.", "type": "TXT", "ttl": ttl, "value": tlsrpt_record(d)})
    if d.host_cname:
        out.append({"name": f"{d.policy_host}.", "type": "CNAME", "ttl": ttl, "value": d.host_cname.rstrip(".") + "."})
    for address in d.host_addresses:
        out.append(
            {"name": f"{d.policy_host}.", "type": "AAAA" if ":" in address else "A", "ttl": ttl, "value": address}
        )
    return out


def txt_rdata(value: str) -> str:
    """A TXT value as zone-file character-strings, split at 255 bytes."""
    chunks = [value[i : i + _TXT_CHUNK] for i in range(0, len(value), _TXT_CHUNK)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def zone_lines(d: PublishedDomain, ttl: int) -> List[str]:
    lines = []
    for r in records(d, ttl):
        value = txt_rdata(str(r["value"])) if r["type"] == "TXT" else str(r["value"])
        lines.append(f"{r['name']}\t{r['ttl']}\tIN\t{r['type']}\t{value}")
    if not d.host_cname and not d.host_addresses:
        lines.append(f"; {d.policy_host}.\t{ttl}\tIN\tA\t<address of the server that serves the policy>")
    return lines
