"""Policy history: what changed in a domain's policy or DANE state, and which changes are
downgrades worth a WARNING.

A downgrade is a change that lowers the protection of mail to the domain: the mode falls
(enforce -> testing or none, testing -> none; RFC 8461 §5), the ``_mta-sts`` record
disappears while a policy is still valid (§3.3: the policy stays in force, but the domain
is on its way out of MTA-STS, or someone removed the record), or DANE goes away (usable TLSA
records before, none now). A changed MX pattern set is recorded too: a new pattern is how
an attacker who controls the policy host would redirect mail (§10.2), so it is worth seeing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from mtasts.core.dane import DaneResult, DaneState
from mtasts.core.freshness import CachedPolicy
from mtasts.core.policy import Mode

# How many changes are kept per domain (the oldest go first).
MAX_CHANGES = 20

_STRENGTH = {Mode.NONE: 0, Mode.TESTING: 1, Mode.ENFORCE: 2}
_WITH_DANE = (DaneState.ALL, DaneState.PARTIAL)
_WITHOUT_DANE = (DaneState.UNSIGNED, DaneState.NO_TLSA)
_UNDECIDED = (DaneState.TEMPFAIL, DaneState.UNKNOWN)


@dataclass(frozen=True)
class Change:
    domain: str
    at: float
    kind: str  # "new", "id", "mode", "mx", "max_age", "txt-gone", "dane"
    old: str
    new: str
    downgrade: bool = False


def _mx(cached: CachedPolicy) -> str:
    return ",".join(sorted(p.text for p in cached.policy.mx)) or "-"


def policy_changes(domain: str, old: Optional[CachedPolicy], new: CachedPolicy, at: float) -> List[Change]:
    """What a newly fetched policy changes against the cached one."""
    if old is None:
        return [Change(domain, at, "new", "-", f"id {new.policy_id}, {new.policy.mode.value}, mx {_mx(new)}")]
    changes = []
    if old.policy_id != new.policy_id:
        changes.append(Change(domain, at, "id", old.policy_id, new.policy_id))
    before, after = old.policy.mode, new.policy.mode
    if before is not after:
        changes.append(Change(domain, at, "mode", before.value, after.value, _STRENGTH[after] < _STRENGTH[before]))
    if _mx(old) != _mx(new):
        changes.append(Change(domain, at, "mx", _mx(old), _mx(new)))
    if old.policy.max_age != new.policy.max_age:
        changes.append(Change(domain, at, "max_age", str(old.policy.max_age), str(new.policy.max_age)))
    return changes


def record_gone(domain: str, cached: CachedPolicy, outcome: str, at: float) -> Change:
    """The TXT re-check found no record while *cached* is still valid."""
    return Change(
        domain, at, "txt-gone", f"id {cached.policy_id}", outcome, downgrade=cached.policy.mode is not Mode.NONE
    )


def dane_change(domain: str, old: Optional[DaneResult], new: DaneResult, at: float) -> Optional[Change]:
    """A change of the DANE state worth keeping. A check that failed (``tempfail``,
    ``unknown``) changes nothing: the last state stands meanwhile. ``tempfail`` only follows
    usable TLSA records, so after it a state without DANE is a downgrade too."""
    if old is None or old.state is new.state or new.state in _UNDECIDED:
        return None
    had = old.state in _WITH_DANE or old.state is DaneState.TEMPFAIL
    if old.state is DaneState.TEMPFAIL and new.state in _WITH_DANE:
        return None  # back from a failure: which of the two it was before is not known
    if old.state is DaneState.UNKNOWN and new.state not in _WITH_DANE:
        return None
    return Change(domain, at, "dane", old.state.value, new.state.value, downgrade=had and new.state in _WITHOUT_DANE)
