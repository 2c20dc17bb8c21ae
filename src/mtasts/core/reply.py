"""What Postfix is told for a policy: the ``smtp_tls_policy_maps`` answer.

See postconf(5) ``smtp_tls_policy_maps`` and Postfix's TLS_README ("TLS policy table").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import FrozenSet, List, Optional, Tuple

from mtasts.core.policy import Mode, Policy
from mtasts.core.policyanswer import AnswerError, read_answer
from mtasts.core.socketmap import NOTFOUND, Status, format_reply

TESTING_IGNORE = "ignore"
TESTING_ENFORCE = "enforce"
# Levels a testing policy may be reported at (``tlsrpt = true``): they never verify, so
# they never stop mail, like RFC 8461 §5 testing mode.
TESTING_LEVELS = ("may", "encrypt")
# Postfix's "{ name = value }" quoting cannot hold a brace; answers never hold CR/LF.
_UNQUOTABLE = re.compile(r"[{}\r\n]")


@dataclass(frozen=True)
class MapProfile:
    """How one socketmap name (``socketmap:...:NAME``) turns policies into answers.

    ``testing = "enforce"`` applies testing policies as if enforced: beyond RFC 8461 §5,
    for admins who want it. ``sni`` adds ``servername=hostname`` (Postfix >= 3.4 only).
    ``tlsrpt`` adds the MTA-STS attributes Postfix >= 3.10 reports in TLSRPT, and then
    also answers testing policies, at ``testing_level``, so they are reported.
    ``dane`` gives ``dane``/``dane-only`` where the domain has DANE (Postfix >= 2.11 with
    DNSSEC lookups). The daemon sets ``sni``, ``tlsrpt`` and ``dane`` from what the local
    Postfix can use (``core.postfixcaps``) unless the file names them (``explicit``).
    """

    testing: str = TESTING_IGNORE
    sni: bool = True
    tlsrpt: bool = False
    testing_level: str = "may"
    dane: bool = True
    # Which of the above the file set (not part of the answer: left out of equality).
    explicit: FrozenSet[str] = field(default=frozenset(), compare=False)


DEFAULT_PROFILE = MapProfile()


def enforces(policy: Optional[Policy], profile: MapProfile) -> bool:
    # parse_policy refuses an enforce or testing policy without mx: no need to look at them.
    if policy is None or policy.mode is Mode.NONE:
        return False
    return policy.mode is Mode.ENFORCE or profile.testing == TESTING_ENFORCE


def tls_policy_reply(domain: str, policy: Optional[Policy], profile: MapProfile) -> bytes:
    """The reply payload for *domain*'s *policy* (None: no usable policy).

    Enforced: ``OK secure match=<patterns in policy order> servername=hostname``, with
    ``*.x`` written ``.x`` (Postfix's subdomain syntax; it matches any depth, the
    nearest Postfix <= 3.10.4 can express). With ``tlsrpt``, the TLSRPT attributes
    follow, and a testing policy is answered ``<testing_level>`` plus the attributes.
    Everything else: ``NOTFOUND ``, so Postfix uses its default TLS level.
    """
    if enforces(policy, profile):
        assert policy is not None
        seen = set()
        names = []
        for pattern in policy.mx:
            name = pattern.postfix_match
            if name not in seen:
                seen.add(name)
                names.append(name)
        data = "secure match=" + ":".join(names)
        if profile.sni:
            data += " servername=hostname"
    elif profile.tlsrpt and policy is not None and policy.mode is Mode.TESTING:
        data = profile.testing_level
    else:
        return NOTFOUND
    if profile.tlsrpt:
        data = with_tlsrpt(data, domain, policy)
    return format_reply(Status.OK, data)


def tlsrpt_attributes(domain: str, policy: Policy) -> List[Tuple[str, str]]:
    """The MTA-STS attributes of Postfix >= 3.10 (TLSRPT_README), as (name, value).

    ``mx_host_pattern`` is each mx line as written (``*.example.net``: Postfix 3.10.5+
    matches MX names with it, and ``.example.net`` would match nothing) without a trailing
    dot, which Postfix's ``strcasecmp`` against DNS names (which have none) would never
    match; ``policy_string`` keeps the line verbatim. A policy line
    with ``{`` or ``}`` cannot be quoted in Postfix's syntax and is left out of the
    report (only extension fields can hold them).
    """
    attributes = [("policy_type", "sts"), ("policy_domain", domain)]
    attributes += [("mx_host_pattern", pattern.text.rstrip(".")) for pattern in policy.mx]
    attributes += [("policy_string", line) for line in policy.lines if not _UNQUOTABLE.search(line)]
    return attributes


def with_tlsrpt(data: str, domain: str, policy: Policy) -> str:
    """*data* plus the TLSRPT attributes, or *data* alone if Postfix could not read them.

    The result is read back with Postfix's grammar (policyanswer) and must give exactly
    the intended attributes within the reply size limit: a garbled answer would defer
    mail, a missing report only loses a report.
    """
    attributes = tlsrpt_attributes(domain, policy)
    parts = [data]
    for name, value in attributes:
        parts.append(f"{{ {name} = {value} }}" if name == "policy_string" else f"{name}={value}")
    full = " ".join(parts)
    try:
        _level, read = read_answer(full)
        _level, plain = read_answer(data)
    except AnswerError:
        return data
    return full if read == plain + attributes else data
