"""The one rule that composes the answer Postfix gets: MTA-STS, then an override, then DANE.

Every path that tells anyone what Postfix is answered asks ``compose``: a lookup from the
cache, a lookup after discovery or a DANE check, ``mtasts cache export`` and ``mtasts query``.
Nothing else orders these steps (the copies did, and disagreed: the export skipped the
override, and a host using it as its fallback enforced what the operator had exempted).

1. The MTA-STS answer for the policy and map profile (``reply.tls_policy_reply``).
2. An override in force replaces it with its own level (``core.override``); one that says
   ``dane = true`` is final, above DANE too.
3. Where DANE applies (``[dane] mode = "prefer"``, a profile whose Postfix does DANE, and an
   answer other than ``NOTFOUND``), the DANE result dictates ``dane``/``dane-only`` when the
   domain has usable TLSA records: RFC 8461 §2, MTA-STS never overrides DANE (RFC 7672).
   Without a DANE result there is no answer yet: ``DANE_UNKNOWN``, and the caller checks
   DANE first (a lookup waits for it; an export leaves the domain out).
"""

from __future__ import annotations

from typing import Optional, Union

from mtasts.core.dane import DaneResult, dane_reply
from mtasts.core.override import Override
from mtasts.core.socketmap import NOTFOUND


class _DaneUnknown:
    """The answer waits for a DANE check (``compose`` says so instead of guessing)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "DANE_UNKNOWN"


DANE_UNKNOWN = _DaneUnknown()


def dane_applies(answer: bytes, mode: str, profile_dane: bool) -> bool:
    """Whether DANE is checked before *answer* is given (``[dane] mode`` and the map
    profile's ``dane``, off where the reading Postfix cannot do DANE).

    Only an answer that names a TLS level can override DANE; ``NOTFOUND`` already leaves it
    to Postfix. A Postfix without DNSSEC lookups does no DANE of its own, so there the
    MTA-STS answer is the strongest it can use, and RFC 8461 §2 has nothing to protect.
    """
    return profile_dane and mode == "prefer" and answer != NOTFOUND


def needs_dane(sts_answer: bytes, override: Optional[Override], dane_mode: str, profile_dane: bool) -> bool:
    """Whether the answer depends on the next hop's DANE state (steps 2 and 3 below)."""
    if override is not None:
        return not override.dane and dane_applies(override.reply, dane_mode, profile_dane)
    return dane_applies(sts_answer, dane_mode, profile_dane)


def compose(
    sts_answer: bytes, override: Optional[Override], dane_mode: str, profile_dane: bool, dane: Optional[DaneResult]
) -> Union[bytes, _DaneUnknown]:
    """The answer for a policy's *sts_answer*, an *override* in force (or None) and the
    next hop's last *dane* result (or None: never checked); ``DANE_UNKNOWN`` when DANE
    applies and has not been checked."""
    answer = sts_answer if override is None else override.reply
    if not needs_dane(sts_answer, override, dane_mode, profile_dane):
        return answer
    if dane is None:
        return DANE_UNKNOWN
    return dane_reply(dane) or answer
