"""The ``_mta-sts`` TXT record (RFC 8461 §3.1).

    sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
    sts-field-delim = *WSP ";" *WSP
    sts-version     = %s"v=STSv1"
    sts-id          = %s"id=" 1*32(ALPHA / DIGIT)
    sts-extension   = sts-ext-name "=" sts-ext-value
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence, Tuple

from mtasts.errors import RecordError

VERSION = "v=STSv1"
_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")
_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}\Z")
# Any VCHAR but "=" and ";" (%x21-3A / %x3C / %x3E-7E).
_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+\Z")
_WSP = " \t"


@dataclass(frozen=True)
class PolicyRecord:
    """A parsed ``v=STSv1`` record: the policy id and any extension fields."""

    policy_id: str
    extensions: Tuple[Tuple[str, str], ...] = ()


def is_sts_record(text: str) -> bool:
    """Does this TXT string claim to be an STS record?

    RFC 8461 §3.1 discards records "that do not begin with v=STSv1;". The ABNF also
    allows whitespace before the ";", so we read "begins with" as ``v=STSv1`` followed
    by the end, ";" or whitespace, and apply the same rule to single and multiple
    answers (checklist A-11).
    """
    if not text.startswith(VERSION):
        return False
    rest = text[len(VERSION) :]
    return not rest or rest[0] in ";" + _WSP


def parse_record(text: str) -> PolicyRecord:
    """Parse one STS record per the ABNF; raise RecordError with the reason."""
    if not text.isascii():
        raise RecordError("record is not US-ASCII")
    parts = text.split(";")
    if parts[0].rstrip(_WSP) != VERSION:
        raise RecordError(f"record does not begin with {VERSION!r}")
    fields = [p.strip(_WSP) for p in parts[1:]]
    if fields and not fields[-1]:
        fields.pop()  # the optional trailing delimiter
    policy_id = None
    extensions = []
    for field in fields:
        name, eq, value = field.partition("=")
        if not eq or not _EXT_NAME.match(name) or not _EXT_VALUE.match(value):
            raise RecordError(f"field {field!r} is not name=value")
        if name == "id":
            # RFC 8461 §3.2: a repeated field is ignored after its first occurrence.
            if policy_id is None:
                if not _ID.match(value):
                    raise RecordError(f"id {value!r} is not 1-32 letters and digits")
                policy_id = value
        else:
            extensions.append((name, value))
    if policy_id is None:
        raise RecordError("record has no id field")
    return PolicyRecord(policy_id, tuple(extensions))


def select_record(texts: Sequence[bytes]) -> PolicyRecord:
    """Pick the one STS record out of a TXT RRset (each item: the RR's strings joined).

    RFC 8461 §3.1: discard non-STS records; if not exactly one remains, there is no
    available policy.
    """
    candidates = []
    for raw in texts:
        text = raw.decode("ascii", "replace")  # non-ASCII is caught by parse_record
        if is_sts_record(text):
            candidates.append(text)
    if not candidates:
        raise RecordError("no v=STSv1 TXT record")
    if len(candidates) > 1:
        raise RecordError(f"{len(candidates)} v=STSv1 TXT records; exactly one is allowed")
    return parse_record(candidates[0])
