"""The answer Postfix receives for each policy (postfix-interface.md §3)."""

from mtasts.core.policy import parse_policy
from mtasts.core.reply import MapProfile, tls_policy_reply


def policy(mode, *mx):
    lines = ["version: STSv1", f"mode: {mode}", "max_age: 86400"] + [f"mx: {m}" for m in mx]
    return parse_policy("\r\n".join(lines).encode())


def test_enforce_answer_in_policy_order():
    p = policy("enforce", "mx2.example.com", "*.example.net", "mx1.example.com")
    assert tls_policy_reply(p, MapProfile()) == (
        b"OK secure match=mx2.example.com:.example.net:mx1.example.com servername=hostname"
    )


def test_duplicates_collapsed_order_kept():
    p = policy("enforce", "b.example", "a.example", "B.example")
    assert tls_policy_reply(p, MapProfile()) == b"OK secure match=b.example:a.example servername=hostname"


def test_without_sni_for_old_postfix():
    p = policy("enforce", "mx.example.com")
    assert tls_policy_reply(p, MapProfile(sni=False)) == b"OK secure match=mx.example.com"


def test_testing_ignored_by_default():
    assert tls_policy_reply(policy("testing", "mx.example.com"), MapProfile()) == b"NOTFOUND "


def test_testing_enforced_when_asked():
    p = policy("testing", "mx.example.com")
    assert tls_policy_reply(p, MapProfile(testing="enforce")).startswith(b"OK secure match=mx.example.com")


def test_none_and_absent():
    assert tls_policy_reply(policy("none"), MapProfile(testing="enforce")) == b"NOTFOUND "
    assert tls_policy_reply(None, MapProfile()) == b"NOTFOUND "


def test_cached_reply_is_memoised_per_profile():
    from mtasts.core.freshness import CachedPolicy
    from mtasts.core.reply import cached_reply

    p = policy("enforce", "mx.example.com")
    cached = CachedPolicy(p, "id1", b"", 0.0)
    plain, old = MapProfile(), MapProfile(sni=False)
    assert cached_reply(cached, plain) == tls_policy_reply(p, plain)
    assert cached_reply(cached, old) == tls_policy_reply(p, old)
    assert set(cached.replies) == {plain, old}
    assert cached_reply(None, plain) == b"NOTFOUND "
