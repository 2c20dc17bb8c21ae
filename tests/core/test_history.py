"""Which policy and DANE changes are recorded, and which are downgrades."""

import pytest

from mtasts.core.dane import DaneResult, DaneState
from mtasts.core.freshness import CachedPolicy
from mtasts.core.history import dane_change, policy_changes, record_gone
from mtasts.core.policy import parse_policy


def cached(mode="enforce", mx=("mx.example.com",), max_age=86400, policy_id="a"):
    body = "version: STSv1\r\nmode: %s\r\n%smax_age: %d\r\n" % (mode, "".join(f"mx: {m}\r\n" for m in mx), max_age)
    return CachedPolicy(parse_policy(body.encode()), policy_id, 0.0)


@pytest.mark.parametrize(
    "before,after,downgrade",
    [
        ("enforce", "testing", True),
        ("enforce", "none", True),
        ("testing", "none", True),
        ("none", "testing", False),
        ("testing", "enforce", False),
        ("none", "enforce", False),
    ],
)
def test_a_falling_mode_is_a_downgrade(before, after, downgrade):
    mx = () if after == "none" or before == "none" else ("mx.example.com",)
    old = cached(before, mx=("mx.example.com",) if before != "none" else ())
    new = cached(after, mx=("mx.example.com",) if after != "none" else ())
    modes = [c for c in policy_changes("example.com", old, new, 1.0) if c.kind == "mode"]
    assert [(c.old, c.new, c.downgrade) for c in modes] == [(before, after, downgrade)], mx


def test_unchanged_policies_record_nothing_and_the_first_is_new():
    assert policy_changes("example.com", cached(), cached(), 1.0) == []
    assert [c.kind for c in policy_changes("example.com", None, cached(), 1.0)] == ["new"]
    kinds = [
        c.kind
        for c in policy_changes("example.com", cached(), cached(mx=("mx2.example.com",), max_age=5, policy_id="b"), 1.0)
    ]
    assert kinds == ["id", "mx", "max_age"]


def test_a_gone_record_is_a_downgrade_unless_the_policy_was_none():
    assert record_gone("example.com", cached(), "nxdomain", 1.0).downgrade
    assert not record_gone("example.com", cached("none", mx=()), "nodata", 1.0).downgrade


def result(state):
    return DaneResult(DaneState(state), 0.0, 60.0)


@pytest.mark.parametrize(
    "old,new,recorded,downgrade",
    [
        ("dane-only", "no-tlsa", True, True),
        ("dane", "unsigned", True, True),
        ("dane-only", "dane", True, False),
        ("unsigned", "dane-only", True, False),
        ("dane-only", "tempfail", False, False),
        ("tempfail", "unsigned", True, True),
        ("tempfail", "dane-only", False, False),
        ("unknown", "unsigned", False, False),
        ("unknown", "dane", True, False),
        ("dane", "dane", False, False),
    ],
)
def test_dane_changes(old, new, recorded, downgrade):
    change = dane_change("example.com", result(old), result(new), 1.0)
    assert (change is not None) == recorded
    if change is not None:
        assert change.downgrade == downgrade
    assert dane_change("example.com", None, result(new), 1.0) is None
