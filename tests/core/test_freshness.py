"""Checklist section E: cache decisions, with an explicit clock."""

import pytest

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
