"""What Postfix is told for a policy: the ``smtp_tls_policy_maps`` answer.

See postconf(5) ``smtp_tls_policy_maps`` and shared/docs/postfix-interface.md §3.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from mtasts.core.policy import Mode, Policy
from mtasts.core.socketmap import NOTFOUND, Status, format_reply

TESTING_IGNORE = "ignore"
TESTING_ENFORCE = "enforce"


@dataclass(frozen=True)
class MapProfile:
    """How one socketmap name (``socketmap:...:NAME``) turns policies into answers.

    ``testing = "enforce"`` applies testing policies as if enforced: beyond RFC 8461 §5,
    for admins who want it. ``sni`` adds ``servername=hostname`` (Postfix >= 3.4 only).
    """

    testing: str = TESTING_IGNORE
    sni: bool = True


DEFAULT_PROFILE = MapProfile()


def cached_reply(cached, profile: MapProfile) -> bytes:
    """``tls_policy_reply`` for a CachedPolicy (or None), memoised on the cached policy."""
    if cached is None:
        return NOTFOUND
    reply = cached.replies.get(profile)
    if reply is None:
        reply = cached.replies[profile] = tls_policy_reply(cached.policy, profile)
    return reply


def enforces(policy: Optional[Policy], profile: MapProfile) -> bool:
    if policy is None or not policy.mx:
        return False
    if policy.mode is Mode.ENFORCE:
        return True
    return policy.mode is Mode.TESTING and profile.testing == TESTING_ENFORCE


def tls_policy_reply(policy: Optional[Policy], profile: MapProfile) -> bytes:
    """The reply payload for *policy* (None: no usable policy).

    Enforced: ``OK secure match=<patterns in policy order> servername=hostname``, with
    ``*.x`` written ``.x`` (Postfix's subdomain syntax; it matches any depth, the
    nearest Postfix <= 3.10.4 can express). Everything else: ``NOTFOUND ``, so Postfix
    uses its default TLS level.
    """
    if not enforces(policy, profile):
        return NOTFOUND
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
    return format_reply(Status.OK, data)
