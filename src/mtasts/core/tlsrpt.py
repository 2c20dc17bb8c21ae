"""The ``_smtp._tls`` TLSRPT record (RFC 8460 §3).

    tlsrpt-record  = tlsrpt-version 1*(field-delim tlsrpt-field) [field-delim]
    field-delim    = *WSP ";" *WSP
    tlsrpt-version = %s"v=TLSRPTv1"
    tlsrpt-rua     = %s"rua=" tlsrpt-uri *(*WSP "," *WSP tlsrpt-uri)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, Tuple

from mtasts.errors import RecordError

VERSION = "v=TLSRPTv1"
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+\Z")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x2b\x2d-\x3a\x3c-\x7e]+\Z")  # no "," or ";" unescaped
_WSP = " \t"


@dataclass(frozen=True)
class TlsrptRecord:
    rua: Tuple[str, ...]  # every URI as published
    usable: Tuple[str, ...]  # the mailto: and https: ones (the only schemes RFC 8460 defines)


def parse_tlsrpt(text: str) -> TlsrptRecord:
    if not text.isascii():
        raise RecordError("record is not US-ASCII")
    parts = text.split(";")
    if parts[0].rstrip(_WSP) != VERSION:
        raise RecordError(f"record does not begin with {VERSION!r}")
    fields = [p.strip(_WSP) for p in parts[1:]]
    if fields and not fields[-1]:
        fields.pop()
    rua = None
    for field in fields:
        name, eq, value = field.partition("=")
        if name == "rua" and eq:
            if rua is None:
                uris = tuple(u.strip(_WSP) for u in value.split(","))
                bad = [u for u in uris if not _URI.match(u)]
                if bad:
                    raise RecordError(f"rua {bad[0]!r} is not a URI (commas, '!' and ';' must be %-encoded)")
                rua = uris
            continue
        if not eq or not _EXT_NAME.match(name) or not _EXT_VALUE.match(value):
            raise RecordError(f"field {field!r} is not name=value")
    if rua is None:
        raise RecordError("record has no rua field")
    usable = tuple(u for u in rua if u.lower().startswith(("mailto:", "https:")))
    return TlsrptRecord(rua=rua, usable=usable)


def select_tlsrpt(texts: Sequence[bytes]) -> TlsrptRecord:
    """RFC 8460 §3: discard records not beginning ``v=TLSRPTv1``; exactly one must remain."""
    candidates = []
    for raw in texts:
        text = raw.decode("ascii", "replace")
        rest = text[len(VERSION):]
        if text.startswith(VERSION) and (not rest or rest[0] in ";" + _WSP):
            candidates.append(text)
    if not candidates:
        raise RecordError("no v=TLSRPTv1 TXT record")
    if len(candidates) > 1:
        raise RecordError(f"{len(candidates)} v=TLSRPTv1 TXT records; exactly one is allowed")
    return parse_tlsrpt(candidates[0])
