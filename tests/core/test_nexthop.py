"""Keys Postfix sends in smtp_tls_policy_maps, and which Policy Domain each means."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.core.nexthop import policy_domain


@pytest.mark.parametrize(
    "key,domain",
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("[smtp.relay.example]:587", "smtp.relay.example"),  # the smart host
        ("[smtp.relay.example]", "smtp.relay.example"),
        ("smtp.relay.example:25", "smtp.relay.example"),
        ("mail.example.com", "mail.example.com"),  # no parent fallback, the name itself
        ("b\u00fccher.example", "xn--bcher-kva.example"),
        ("B\u00dcCHER.example", "xn--bcher-kva.example"),
    ],
)
def test_lookups(key, domain):
    assert policy_domain(key) == domain


@pytest.mark.parametrize(
    "key",
    [
        ".example.com",  # Postfix's parent probe: never looked up
        ".com",
        "[192.0.2.1]",  # A-20 address literal
        "[ipv6:2001:db8::1]",
        "[2001:db8::1]:25",
        "192.0.2.1",
        "2001:db8::1",
        "localhost",  # single label
        "a b.example",
        "a..example",
        "[unterminated.example",
        "[x.example]junk",
        "x.example:port",
        "\ufffd.example",
        "",
        "-bad.example",
        "a" * 64 + ".example",
    ],
)
def test_no_lookup(key):
    assert policy_domain(key) is None


@given(st.text(max_size=60))
def test_fuzz_never_raises(key):
    result = policy_domain(key)
    assert result is None or (result == result.lower() and result.isascii() and not result.endswith("."))


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


@given(st.one_of(
    st.lists(_label, min_size=1, max_size=5).map(".".join),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-[]:_ABCZ", max_size=40),
))
def test_fast_path_agrees_with_the_general_rules(key):
    from mtasts.core.nexthop import _normalised

    assert policy_domain(key) == _normalised.__wrapped__(key)
