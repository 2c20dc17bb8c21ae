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

from mtasts.core import tagvalue
from mtasts.core.tagvalue import begins_with_version
from mtasts.errors import RecordError

VERSION = "v=STSv1"
_ID = re.compile(r"[A-Za-z0-9]{1,32}\Z")


@dataclass(frozen=True)
class PolicyRecord:
    """A parsed ``v=STSv1`` record: the policy id and any extension fields."""

    policy_id: str
    extensions: Tuple[Tuple[str, str], ...] = ()


def is_sts_record(text: str) -> bool:
    """Does this TXT string claim to be an STS record? (See tagvalue.begins_with_version.)"""
    return begins_with_version(text, VERSION)


def parse_record(text: str) -> PolicyRecord:
    """Parse one STS record per the ABNF; raise RecordError with the reason."""
    fields = tagvalue.fields(text, VERSION)
    policy_id = None
    extensions = []
    for field in fields:
        tagvalue.check_extension(field)
        name, _, value = field.partition("=")
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
    return parse_record(tagvalue.select_one(texts, VERSION))
