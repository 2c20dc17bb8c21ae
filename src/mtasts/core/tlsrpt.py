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

from mtasts.core import tagvalue
from mtasts.errors import RecordError

VERSION = "v=TLSRPTv1"
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x2b\x2d-\x3a\x3c-\x7e]+\Z")  # no "," or ";" unescaped
_WSP = tagvalue.WSP


@dataclass(frozen=True)
class TlsrptRecord:
    rua: Tuple[str, ...]  # every URI as published
    usable: Tuple[str, ...]  # the mailto: and https: ones (the only schemes RFC 8460 defines)


def parse_tlsrpt(text: str) -> TlsrptRecord:
    fields = tagvalue.fields(text, VERSION)
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
        tagvalue.check_extension(field)
    if rua is None:
        raise RecordError("record has no rua field")
    usable = tuple(u for u in rua if u.lower().startswith(("mailto:", "https:")))
    return TlsrptRecord(rua=rua, usable=usable)


def select_tlsrpt(texts: Sequence[bytes]) -> TlsrptRecord:
    """RFC 8460 §3: discard records not beginning ``v=TLSRPTv1``; exactly one must remain."""
    return parse_tlsrpt(tagvalue.select_one(texts, VERSION))
