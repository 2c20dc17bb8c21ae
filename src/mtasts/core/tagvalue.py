"""The tag-value syntax shared by the ``_mta-sts`` (RFC 8461 §3.1) and ``_smtp._tls``
(RFC 8460 §3) TXT records: a version, then ``name=value`` fields separated by
``*WSP ";" *WSP``, with an optional trailing delimiter."""

from __future__ import annotations

import re
from typing import List, Sequence

from mtasts.errors import RecordError

WSP = " \t"
EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
# Any VCHAR but "=" and ";" (%x21-3A / %x3C / %x3E-7E).
EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+\Z")


def begins_with_version(text: str, version: str) -> bool:
    """Does this TXT string claim to be a record of *version*?

    Both RFCs discard records "that do not begin with" ``<version>;``. The ABNF also
    allows whitespace before the ";", so we read "begins with" as the version followed
    by the end, ";" or whitespace, the same for single and multiple answers.
    """
    if not text.startswith(version):
        return False
    rest = text[len(version) :]
    return not rest or rest[0] in ";" + WSP


def select_one(texts: Sequence[bytes], version: str) -> str:
    """The one record of *version* in a TXT RRset; RecordError unless exactly one."""
    candidates = [t for t in (raw.decode("ascii", "replace") for raw in texts) if begins_with_version(t, version)]
    if not candidates:
        raise RecordError(f"no {version} TXT record")
    if len(candidates) > 1:
        raise RecordError(f"{len(candidates)} {version} TXT records; exactly one is allowed")
    return candidates[0]


def fields(text: str, version: str) -> List[str]:
    """The fields after the version, whitespace-stripped; RecordError for a bad frame."""
    if not text.isascii():
        raise RecordError("record is not US-ASCII")
    parts = text.split(";")
    if parts[0].rstrip(WSP) != version:
        raise RecordError(f"record does not begin with {version!r}")
    result = [p.strip(WSP) for p in parts[1:]]
    if result and not result[-1]:
        result.pop()  # the optional trailing delimiter
    return result


def check_extension(field: str) -> None:
    name, eq, value = field.partition("=")
    if not eq or not EXT_NAME.match(name) or not EXT_VALUE.match(value):
        raise RecordError(f"field {field!r} is not name=value")
