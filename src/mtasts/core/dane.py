"""DANE for SMTP (RFC 7672): whether a next hop's MX hosts have usable TLSA records.

Pure decisions over what the DNS said; the lookups live in ``mtasts.net.dane``, and
``core.answer`` puts the result in its place among the answer's parts. RFC 8461
§2: an MTA-STS answer must never override DANE, so where DANE applies Postfix is told
``dane``/``dane-only`` and does the TLSA work itself (Postfix's TLS_README, "Mandatory server certificate
verification" with DANE, and postconf(5) ``smtp_tls_security_level``).

* The MX RRset must be DNSSEC-validated (AD bit from the trusted resolver), else the
  domain is not DANE (RFC 7672 §2.2.1), whatever TLSA records exist.
* Per MX host: its addresses must be validated too; then ``_25._tcp.<host>`` TLSA.
  Usable: usage 2 or 3, selector 0 or 1, matching 0 (any length), 1 (32 bytes) or
  2 (64 bytes) (RFC 7672 §3.1, RFC 6698 §2.1).
* Every host usable: ``dane-only``; some: ``dane``; none: the MTA-STS answer.
* A temporary failure (MX, addresses or TLSA) answers ``dane`` only for a domain that
  has, or last had, usable TLSA: Postfix's ``dane`` falls back to ``may`` for every MX
  host without TLSA, so for a domain never seen with DANE an attacker who delays one
  answer would turn an enforced MTA-STS policy into opportunistic TLS. Otherwise the
  MTA-STS answer stands.
* Null MX (RFC 7505): ``NOTFOUND``, also when it stands among other MX records (Postfix's
  dns_lookup() treats any "." exchange as a null MX and bounces); no MX: the domain
  itself is the host (RFC 7672 §2.2.1).
* TLSA names as Postfix looks them up (RFC 7672 §2.2.2): for a host whose address chain
  validated, ``_port._tcp`` at the CNAME-expanded name first, then at the original name.
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
    tlsa_name: str = ""  # where they were found (``_25._tcp.<CNAME target>`` or ``<host>``)


class DaneState(enum.Enum):
    UNSIGNED = "unsigned"  # MX RRset not validated: not a DANE domain
    NO_TLSA = "no-tlsa"  # signed, no MX host has usable TLSA
    PARTIAL = "dane"  # some MX hosts usable
    ALL = "dane-only"  # every MX host usable
    NULL_MX = "null-mx"  # RFC 7505: the domain accepts no mail
    TEMPFAIL = "tempfail"  # a lookup failed on a domain with usable TLSA: let Postfix decide
    UNKNOWN = "unknown"  # a lookup failed, no usable TLSA known: the MTA-STS answer stands


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


def had_usable_tlsa(previous: Optional[DaneResult]) -> bool:
    """The last result saw usable TLSA (TEMPFAIL is only ever reached from there)."""
    return previous is not None and previous.state in (DaneState.ALL, DaneState.PARTIAL, DaneState.TEMPFAIL)


def domain_state(hosts: Sequence[HostDane], previous: Optional[DaneResult] = None) -> DaneState:
    """The next hop's state from its (validated) MX hosts' states."""
    states = [h.state for h in hosts]
    if not states:
        return DaneState.NO_TLSA
    if HostState.TEMPFAIL in states:
        if HostState.USABLE in states or had_usable_tlsa(previous):
            return DaneState.TEMPFAIL
        return DaneState.UNKNOWN
    if all(s is HostState.USABLE for s in states):
        return DaneState.ALL
    if HostState.USABLE in states:
        return DaneState.PARTIAL
    return DaneState.NO_TLSA


def after_mx_failure(previous: Optional[DaneResult]) -> DaneState:
    """The MX lookup failed temporarily: only a domain that had usable TLSA stays
    Postfix's to decide; for any other the MTA-STS answer stands (see the module text)."""
    return DaneState.TEMPFAIL if had_usable_tlsa(previous) else DaneState.UNKNOWN


def is_null_mx(exchanges: Sequence[str]) -> bool:
    """RFC 7505 null MX; like Postfix, a "." exchange among others counts too."""
    return any(name in ("", ".") for name in exchanges)


def tlsa_names(host: str, canonical: str, port: int) -> Tuple[str, ...]:
    """Where Postfix looks for *host*'s TLSA records, in order (RFC 7672 §2.2.2)."""
    names = [f"_{port}._tcp.{canonical}"] if canonical and canonical != host else []
    return tuple(names + [f"_{port}._tcp.{host}"])


_REPLIES = {
    DaneState.ALL: format_reply(Status.OK, "dane-only"),
    DaneState.PARTIAL: format_reply(Status.OK, "dane"),
    DaneState.TEMPFAIL: format_reply(Status.OK, "dane"),
    DaneState.NULL_MX: NOTFOUND,
}


def dane_reply(result: Optional[DaneResult]) -> Optional[bytes]:
    """The answer DANE dictates, or None when the MTA-STS answer stands (``core.answer``
    composes the two)."""
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
        "hosts": [_host_to_json(h) for h in result.hosts],
    }


def _host_to_json(host: HostDane) -> Dict[str, Any]:
    data: Dict[str, Any] = {"host": host.host, "state": host.state.value, "tlsa": list(host.tlsa)}
    if host.tlsa_name:
        data["tlsa_name"] = host.tlsa_name
    return data


def result_from_json(data: Dict[str, Any]) -> DaneResult:
    return DaneResult(
        state=DaneState(data["state"]),
        checked_at=float(data["checked_at"]),
        expires_at=float(data["expires_at"]),
        detail=str(data.get("detail", "")),
        hosts=tuple(
            HostDane(
                str(h["host"]),
                HostState(h["state"]),
                tuple(str(t) for t in h.get("tlsa", ())),
                str(h.get("tlsa_name", "")),
            )
            for h in data.get("hosts", ())
        ),
    )
