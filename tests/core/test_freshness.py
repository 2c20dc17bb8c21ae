"""Cache decisions (RFC 8461 §3.3, §5.1, §10.2), with an explicit clock."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.core import freshness
from mtasts.core.freshness import Background, Hold, decide, held, learned, refresh_failed, txt_confirmed
from mtasts.core.policy import parse_policy

T0 = 1_700_000_000.0
RECHECK = 60.0


def pol(max_age=86400, mode="enforce"):
    return parse_policy(f"version: STSv1\nmode: {mode}\nmx: mx.example.com\nmax_age: {max_age}\n".encode())


def entry(max_age=86400, mode="enforce", jitter=0.0):
    p = pol(max_age, mode)
    return learned(None, "example.com", p, "A", T0, jitter)


def test_unknown_domain_must_discover():
    assert decide(None, T0, RECHECK).discover


def test_e70_valid_policy_served_without_network():
    e = entry()
    d = decide(e, T0 + 30, RECHECK)
    assert not d.discover and d.policy is e.cached.policy and d.background is Background.NOTHING


def test_txt_recheck_after_interval():
    e = entry()
    assert decide(e, T0 + RECHECK, RECHECK).background is Background.TXT_CHECK
    confirmed = txt_confirmed(e, T0 + RECHECK)
    assert decide(confirmed, T0 + RECHECK + 1, RECHECK).background is Background.NOTHING


def test_e76_daily_refresh_regardless_of_txt():
    e = entry(max_age=604800)
    assert e.refresh_at == T0 + 86400
    assert decide(e, T0 + 86400, RECHECK).background is Background.REFRESH


def test_short_max_age_refreshes_at_half():
    assert entry(max_age=3600).refresh_at == T0 + 1800


def test_jitter_only_brings_refresh_forward():
    assert T0 + 86400 * 0.9 <= entry(max_age=604800, jitter=0.999).refresh_at < T0 + 86400


def test_e72_failed_refresh_keeps_policy_and_backs_off():
    e = entry(max_age=604800)
    failed = refresh_failed(e, T0 + 86400, "HTTP 404")
    assert failed.cached == e.cached
    assert failed.refresh_at == T0 + 86400 + freshness.RETRY_MIN
    assert failed.failures == 1 and failed.last_error == "HTTP 404"
    twice = refresh_failed(failed, failed.refresh_at, "HTTP 404")
    assert twice.refresh_at - failed.refresh_at == 2 * freshness.RETRY_MIN
    d = decide(failed, T0 + 86400 + 1, RECHECK)
    assert d.policy is e.cached.policy


def test_retry_delay_capped():
    assert freshness.retry_delay(50) == freshness.RETRY_MAX


@given(st.integers(min_value=-10, max_value=10**30))
def test_any_failure_count_gives_a_delay_within_the_bounds(failures):
    # Issue 24: 1025 failures raised OverflowError, and every lookup answered TEMP.
    assert freshness.RETRY_MIN <= freshness.retry_delay(failures) <= freshness.RETRY_MAX
    ttl = freshness.hold_ttl(freshness.Hold.FETCH_FAILURE, 300, failures, (300.0, 3600.0), 60.0)
    assert freshness.RETRY_MIN <= ttl <= freshness.RETRY_MAX


def test_e74_expired_never_revived():
    e = entry(max_age=100)
    d = decide(e, T0 + 100, RECHECK)
    assert d.discover
    gone = held(e, "example.com", Hold.EXPIRED, T0 + 100, 300, "HTTP 500")
    d = decide(gone, T0 + 101, RECHECK)
    assert not d.discover and d.policy is None
    assert gone.cached == e.cached  # kept for `cache show`, never answered


def test_e75_max_age_zero_expires_at_once():
    e = entry(max_age=0)
    assert decide(e, T0, RECHECK).discover


def test_e78_none_replaces_enforce():
    e = entry()
    none = learned(e, "example.com", pol(mode="none"), "B", T0 + 10, 0.0)
    d = decide(none, T0 + 11, RECHECK)
    assert d.policy.mode.value == "none"


def test_negative_hold_then_discover():
    e = held(None, "example.com", Hold.NO_RECORD, T0, 300)
    assert not decide(e, T0 + 299, RECHECK).discover
    assert decide(e, T0 + 300, RECHECK).discover
    assert e.failures == 0
    assert held(None, "example.com", Hold.FETCH_FAILURE, T0, 300).failures == 1


@pytest.mark.parametrize("mode,warn", [("enforce", True), ("testing", True), ("none", False)])
def test_e77_warning_unless_none(mode, warn):
    assert freshness.needs_warning(entry(mode=mode)) is warn


# -- the fleet: merging another host's entry (RFC 8461 §3.3) ---------------------------


from mtasts.core.dane import DaneResult, DaneState  # noqa: E402


def test_a_failure_from_another_host_never_replaces_a_valid_policy():
    mine = entry()
    theirs = held(None, "example.com", Hold.DNS_FAILURE, T0 + 100, 60, "dns timeout")
    assert freshness.merged(mine, theirs, T0 + 100) is None  # keep mine
    assert freshness.merged(mine, None, T0 + 100) is None  # an empty Redis changes nothing


def test_a_newer_valid_policy_replaces_an_older_one_and_not_the_reverse():
    old = entry()
    new = learned(None, "example.com", pol(), "B", T0 + 500, 0.0)
    assert freshness.merged(old, new, T0 + 600) is new
    assert freshness.merged(new, old, T0 + 600) is None


def test_an_expired_policy_gives_way_to_another_hosts_hold():
    expired = entry(max_age=100)
    hold = held(None, "example.com", Hold.NO_RECORD, T0 + 200, 300)
    assert freshness.merged(expired, hold, T0 + 200) is hold


def test_the_newer_dane_result_travels_with_the_kept_entry():
    mine = entry()
    theirs = held(None, "example.com", Hold.DNS_FAILURE, T0 + 100, 60)
    theirs = freshness.replace(theirs, dane=DaneResult(DaneState.ALL, T0 + 100, T0 + 400))
    kept = freshness.merged(mine, theirs, T0 + 100)
    assert kept is not None and kept.cached is mine.cached and kept.dane.state is DaneState.ALL


_entries = st.one_of(
    st.none(),
    st.builds(
        lambda age, fetched: learned(None, "example.com", pol(max_age=age), "X", T0 + fetched, 0.0),
        st.integers(1, 10_000),
        st.floats(0, 5_000),
    ),
    st.builds(
        lambda at, ttl, hold: held(None, "example.com", hold, T0 + at, ttl),
        st.floats(0, 5_000),
        st.floats(1, 3_600),
        st.sampled_from(list(Hold)),
    ),
)


@given(_entries, _entries, st.floats(0, 10_000))
def test_merging_never_loses_a_valid_policy_nor_revives_an_expired_one(local, incoming, at):
    now = T0 + at
    result = freshness.merged(local, incoming, now)
    kept = local if result is None else result
    if local is not None and local.valid_policy(now) is not None:
        assert kept.valid_policy(now) is not None
        assert kept.valid_policy(now).fetched_at >= local.valid_policy(now).fetched_at
    if kept is not None and kept.valid_policy(now) is not None:
        assert kept.valid_policy(now) in {e.valid_policy(now) for e in (local, incoming) if e is not None}


def test_a_changed_id_is_not_fetched_during_the_back_off():
    e = refresh_failed(entry(), T0 + 60, "HTTP 500")
    assert not freshness.fetch_due(e, T0 + 120)
    assert freshness.fetch_due(e, T0 + 60 + 300)
    assert freshness.fetch_due(entry(), T0 + 120)  # no failure: fetch at once
