"""MX host matching (RFC 8461 §4.1)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.core.hostname import MxPattern, is_domain


def test_d64_literal_case_insensitive_and_trailing_dot():
    p = MxPattern.parse("mx1.example.com")
    assert p.matches("mx1.example.com")
    assert p.matches("MX1.Example.COM")
    assert p.matches("mx1.example.com.")
    assert not p.matches("mx2.example.com")


@pytest.mark.parametrize(
    "host,ok",
    [
        ("mail.example.com", True),
        ("example.com", False),
        ("foo.bar.example.com", False),
        ("mailexample.com", False),
        (".example.com", False),
        ("MAIL.EXAMPLE.COM.", True),
    ],
)
def test_d65_wildcard_one_label(host, ok):
    assert MxPattern.parse("*.example.com").matches(host) is ok


def test_postfix_match_form():
    assert MxPattern.parse("*.Example.NET").postfix_match == ".example.net"
    assert MxPattern.parse("mx.example.net.").postfix_match == "mx.example.net"


def test_verbatim_text_kept():
    assert MxPattern.parse("*.Example.NET").text == "*.Example.NET"


def test_domain_limits():
    assert is_domain("a" * 63 + ".example")
    assert not is_domain("a" * 64 + ".example")
    assert not is_domain(".".join(["a" * 60] * 5))
    assert not is_domain("a..example")


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)


@given(_label, st.lists(_label, min_size=1, max_size=3), st.lists(_label, min_size=0, max_size=2))
def test_property_wildcard_exactly_one_label(head, base_labels, extra):
    base = ".".join(base_labels) + ".example"
    pattern = MxPattern.parse("*." + base)
    host = ".".join(extra + [head, base])
    assert pattern.matches(host) is (not extra)
    assert not pattern.matches(base)
