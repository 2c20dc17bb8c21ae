"""DANE for SMTP (RFC 7672): whether a next hop's MX hosts have usable TLSA records.

Pure decisions over what the DNS said; the lookups live in ``mtasts.dane``. RFC 8461
§2: an MTA-STS answer must never override DANE, so where DANE applies Postfix is told
``dane``/``dane-only`` and does the TLSA work itself (postfix-interface.md §5).

* The MX RRset must be DNSSEC-validated (AD bit from the trusted resolver), else the
  domain is not DANE (RFC 7672 §2.2.1), whatever TLSA records exist.
* Per MX host: its addresses must be validated too; then ``_25._tcp.<host>`` TLSA.
  Usable: usage 2 or 3, selector 0 or 1, matching 0 (any length), 1 (32 bytes) or
  2 (64 bytes) (RFC 7672 §3.1, RFC 6698 §2.1).
* Every host usable: ``dane-only``; some: ``dane``; none: the MTA-STS answer.
* A temporary failure after the MX RRset was validated: ``dane``, so Postfix decides
  with its own lookups rather than MTA-STS overriding a DANE domain.
* Null MX (RFC 7505): ``NOTFOUND``; no MX: the domain itself is the host (RFC 7672 §2.2.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from mtasts.core.socketmap import NOTFOUND, Status, format_reply

# Length of each matching type's digest (RFC 6698 §2.1.3): SHA-256, SHA-512.
_DIGEST_LENGTH = {1: 32, 2: 64}


@dataclass(frozen=True)
class Tlsa:
    usage: int
    selector: int
    mtype: int
    data: bytes

    @property
    def usable(self) -> bool:
        if self.usage not in (2, 3) or self.selector not in (0, 1):
            return False
        if self.mtype == 0:
            return len(self.data) > 0
        return len(self.data) == _DIGEST_LENGTH.get(self.mtype, -1)

    def __str__(self) -> str:
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


class HostState(enum.Enum):
    USABLE = "usable"  # validated addresses and at least one usable TLSA record
    NO_TLSA = "no-tlsa"  # validated, but no usable TLSA (none, or only unusable ones)
    INSECURE = "insecure"  # the host's addresses or TLSA are not DNSSEC-validated
    TEMPFAIL = "tempfail"  # SERVFAIL or timeout (a bogus signature looks like this)


@dataclass(frozen=True)
class HostDane:
    host: str
    state: HostState
    tlsa: Tuple[str, ...] = ()  # every TLSA record seen, usable or not, for `cache show`


class DaneState(enum.Enum):
    UNSIGNED = "unsigned"  # MX RRset not validated: not a DANE domain
    NO_TLSA = "no-tlsa"  # signed, no MX host has usable TLSA
    PARTIAL = "dane"  # some MX hosts usable
    ALL = "dane-only"  # every MX host usable
    NULL_MX = "null-mx"  # RFC 7505: the domain accepts no mail
    TEMPFAIL = "tempfail"  # signed, a later lookup failed: let Postfix decide
    UNKNOWN = "unknown"  # the MX lookup itself failed: nothing known


@dataclass(frozen=True)
class DaneResult:
    state: DaneState
    checked_at: float
    expires_at: float
    hosts: Tuple[HostDane, ...] = ()
    detail: str = ""

    def fresh(self, now: float) -> bool:
        return now < self.expires_at


def host_state(
    addresses_validated: Optional[bool], tlsa_validated: Optional[bool], records: Sequence[Tlsa]
) -> HostState:
    """One MX host. ``None`` for a lookup that failed temporarily."""
    if addresses_validated is None:
        return HostState.TEMPFAIL
    if not addresses_validated:
        return HostState.INSECURE  # RFC 7672 §2.2.2: no TLSA lookup for insecure addresses
    if tlsa_validated is None:
        return HostState.TEMPFAIL
    if not tlsa_validated:
        return HostState.INSECURE
    return HostState.USABLE if any(t.usable for t in records) else HostState.NO_TLSA


def domain_state(hosts: Sequence[HostDane]) -> DaneState:
    """The next hop's state from its (validated) MX hosts' states."""
    states = [h.state for h in hosts]
    if not states:
        return DaneState.NO_TLSA
    if HostState.TEMPFAIL in states:
        return DaneState.TEMPFAIL
    if all(s is HostState.USABLE for s in states):
        return DaneState.ALL
    if HostState.USABLE in states:
        return DaneState.PARTIAL
    return DaneState.NO_TLSA


def after_mx_failure(previous: Optional[DaneResult]) -> DaneState:
    """The MX lookup failed temporarily: a domain known to be signed stays Postfix's to decide."""
    if previous is not None and previous.state not in (DaneState.UNSIGNED, DaneState.UNKNOWN):
        return DaneState.TEMPFAIL
    return DaneState.UNKNOWN


_REPLIES = {
    DaneState.ALL: format_reply(Status.OK, "dane-only"),
    DaneState.PARTIAL: format_reply(Status.OK, "dane"),
    DaneState.TEMPFAIL: format_reply(Status.OK, "dane"),
    DaneState.NULL_MX: NOTFOUND,
}


def dane_applies(sts_reply: bytes, mode: str) -> bool:
    """Whether DANE is checked before *sts_reply* is given (``[dane] mode``).

    Only an MTA-STS answer can override DANE; ``NOTFOUND`` already leaves it to Postfix.
    """
    return mode == "prefer" and sts_reply != NOTFOUND


def dane_reply(result: Optional[DaneResult]) -> Optional[bytes]:
    """The answer DANE dictates, or None when the MTA-STS answer stands."""
    if result is None:
        return None
    return _REPLIES.get(result.state)


def bounded_ttl(ttls: Sequence[int], low: float, high: float) -> float:
    """How long a result holds: the smallest TTL seen, within [low, high]."""
    return min(max(float(min(ttls, default=high)), low), high)


def result_to_json(result: DaneResult) -> Dict[str, Any]:
    return {
        "state": result.state.value,
        "checked_at": result.checked_at,
        "expires_at": result.expires_at,
        "detail": result.detail,
        "hosts": [{"host": h.host, "state": h.state.value, "tlsa": list(h.tlsa)} for h in result.hosts],
    }


def result_from_json(data: Dict[str, Any]) -> DaneResult:
    return DaneResult(
        state=DaneState(data["state"]),
        checked_at=float(data["checked_at"]),
        expires_at=float(data["expires_at"]),
        detail=str(data.get("detail", "")),
        hosts=tuple(
            HostDane(str(h["host"]), HostState(h["state"]), tuple(str(t) for t in h.get("tlsa", ())))
            for h in data.get("hosts", ())
        ),
    )
