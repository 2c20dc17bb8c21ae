"""One answer rule (issue 25): for any cached policy, override and DANE state, a lookup, the
``cache export`` table and ``query`` give Postfix the same answer, because all three ask
``core.answer.compose``. The export once skipped the override: a host that used it as its
fallback enforced what the operator had exempted."""

from __future__ import annotations

import asyncio
import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from mtasts.commands.query import query_answer
from mtasts.core import freshness
from mtasts.core.dane import DaneResult, DaneState
from mtasts.core.override import LEVELS, Override
from mtasts.core.policy import parse_policy
from tests.resolver.conftest import Host, policy_body
from tests.support.fakes import Clock, FakeDns, FakePolicies

D = "paths.test"
MODES = st.sampled_from(["enforce", "testing", "none", None])  # None: no policy (a hold)
OVERRIDES = st.none() | st.tuples(st.sampled_from(LEVELS), st.booleans())
DANE = st.none() | st.sampled_from(list(DaneState))
PROFILES = st.fixed_dictionaries(
    {"testing": st.sampled_from(["ignore", "enforce"]), "dane": st.booleans(), "tlsrpt": st.booleans()}
)


@settings(max_examples=300, deadline=None)
@given(MODES, OVERRIDES, DANE, PROFILES, st.sampled_from(["prefer", "off"]))
def test_lookup_export_and_query_agree(mode, override, dane_state, profile, dane_mode):
    clock = Clock()
    host = Host(clock, FakeDns(), FakePolicies(), dane={"mode": dane_mode}, maps={"postfix": _profile(profile)})
    resolver = host.resolver
    now = clock()
    dane = None if dane_state is None else DaneResult(dane_state, now, now + 3600)
    policy = None
    if mode is not None:
        policy = parse_policy(policy_body(D, mode=mode))
        entry = freshness.learned(None, D, policy, "id1", now, 0.0)
    else:
        entry = freshness.held(None, D, freshness.Hold.NO_RECORD, now, 600.0)
    entry = dataclasses.replace(entry, dane=dane)
    host.cache.put(entry)
    exemption = None
    if override is not None:
        exemption = Override(D, override[0], now + 3600, "test", override[1])
        resolver.overrides[D] = exemption
    config_profile = resolver.profile("postfix")

    looked_up = resolver.answer_nowait("postfix", D)  # None: it waits for a DANE check first
    exported = resolver.cached_answer(entry, config_profile)  # None: left out for the same reason
    assert (looked_up is None) == (exported is None)
    if looked_up is None:
        return  # a DANE check is due: both wait for it; query makes it (next test)
    assert looked_up == exported == query_answer(D, policy, exemption, config_profile, dane_mode, dane)


def test_without_a_dane_result_the_lookup_checks_dane_first_and_then_agrees():
    clock, dns, policies = Clock(), FakeDns(), FakePolicies()
    dns.publish(D, "id1")
    policies.serve(D, policy_body(D))

    async def scenario():
        host = Host(clock, dns, policies, dane={"mode": "prefer"})
        await host.resolver.start()
        try:
            answer = await host.answer(D)  # discovery, then the DANE check (unsigned here)
            entry = host.cache.peek(D)
            profile = host.resolver.profile("postfix")
            return (
                answer,
                host.resolver.cached_answer(entry, profile),
                query_answer(D, entry.cached.policy, None, profile, "prefer", entry.dane),
            )
        finally:
            await host.resolver.close()

    answer, exported, queried = asyncio.run(scenario())
    assert answer == exported == queried and answer.startswith(b"OK secure")


def _profile(values):
    from mtasts.core.reply import MapProfile

    return MapProfile(**values)
