"""Keys Postfix sends in smtp_tls_policy_maps, and which Policy Domain each means."""

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtasts.core.nexthop import NextHop, next_hop, policy_domain


@pytest.mark.parametrize(
    "key,domain",
    [
        ("example.com", "example.com"),
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("[smtp.relay.example]:587", "smtp.relay.example"),  # the smart host (Postfix's relayhost form)
        ("[smtp.relay.example]", "smtp.relay.example"),
        ("smtp.relay.example:25", "smtp.relay.example"),
        ("mail.example.com", "mail.example.com"),  # RFC 8461 §3: the domain itself, never a parent
        ("b\u00fccher.example", "xn--bcher-kva.example"),  # IDN: the A-label (UTS #46)
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
        "[192.0.2.1]",  # an address literal: no policy domain
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


@given(
    st.one_of(
        st.lists(_label, min_size=1, max_size=5).map(".".join),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.-[]:_ABCZ", max_size=40),
    )
)
def test_fast_path_agrees_with_the_general_rules(key):
    from mtasts.core.nexthop import _normalised

    general = _normalised.__wrapped__(key)
    assert policy_domain(key) == (general.domain if general else None)
    assert next_hop(key) == general


@pytest.mark.parametrize(
    "key,hop",
    [
        ("example.com", NextHop("example.com")),
        ("[relay.example]", NextHop("relay.example", mx=False)),  # no MX lookup, port 25
        ("[relay.example]:587", NextHop("relay.example", mx=False, port=587)),
        ("relay.example:587", NextHop("relay.example", mx=True, port=587)),  # MX lookup, port 587
        ("Relay.Example.:2525", NextHop("relay.example", port=2525)),
    ],
)
def test_next_hop_says_how_postfix_reaches_the_key(key, hop):
    # DANE looks where Postfix connects: _port._tcp of the MX hosts, or of [host] itself.
    assert next_hop(key) == hop
    assert hop.default is (hop.mx and hop.port == 25)


@pytest.mark.parametrize("key", ["relay.example:0", "[relay.example]:65536", "relay.example:99999"])
def test_ports_out_of_range_are_no_lookup(key):
    assert next_hop(key) is None


@pytest.mark.parametrize(
    "key,domain",
    [
        # UTS #46 non-transitional, as Postfix maps keys (enable_idna2003_compatibility = no):
        # IDNA 2003 would give strasse.de, another registered domain.
        ("stra\u00dfe.de", "xn--strae-oqa.de"),
        ("STRA\u00dfE.DE", "xn--strae-oqa.de"),
        ("\u03c3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2.example", "xn--kxa6ajbbmh.example"),  # final sigma kept
        (
            "\u03a3\u038a\u03a3\u03a5\u03a6\u039f\u03a3.example",
            "xn--kxa6akbbkh.example",
        ),  # upper case: every sigma maps to \u03c3
        ("xn--strae-oqa.de", "xn--strae-oqa.de"),  # an A-label stays as it is
        ("XN--STRAE-OQA.DE", "xn--strae-oqa.de"),
        ("fa\u00df.de:25", "xn--fa-hia.de"),
    ],
)
def test_idn_keys_map_as_postfix_maps_them(key, domain):
    assert policy_domain(key) == domain


@pytest.mark.parametrize("key", ["a\u200db.example", "\u200d.example", "a\u200cb.example"])
def test_joiners_out_of_context_get_no_lookup(key):
    # RFC 5892 CONTEXTJ: a ZWJ/ZWNJ not after a virama is invalid; better no policy than another name's.
    assert policy_domain(key) is None


IDN2 = shutil.which("idn2")
_idn_label = st.lists(
    st.sampled_from(
        list("abzAZ09-")
        + [
            "\u00df",
            "\u03c2",
            "\u03c3",
            "\u03a3",
            "\u00fc",
            "\u00dc",
            "\u200d",
            "\u200c",
            "\u094d",
            "\u0915",
            "\u0130",
            "\uff21",
            "\u2126",
            "\u00e9",
            "e\u0301",
        ]
    ),
    min_size=1,
    max_size=8,
).map("".join)


@pytest.mark.skipif(
    IDN2 is None, reason="idn2 (GNU libidn2, IDNA 2008 + UTS #46) is not installed; .ci/run installs it"
)
@settings(max_examples=300, deadline=None)
@given(st.lists(_idn_label, min_size=2, max_size=3).map(".".join))
def test_idn_mapping_agrees_with_libidn2(name):
    # An independent implementation of UTS #46 non-transitional processing (libidn2's
    # default): where it maps a name, so must we, to the same A-labels; where it refuses,
    # there is no lookup.
    done = subprocess.run([IDN2, "--quiet", "--", name], capture_output=True, text=True)
    ours = policy_domain(name)
    if done.returncode == 0:
        expected = done.stdout.strip()
        from mtasts.core.hostname import is_domain

        if is_domain(expected) and not expected.rsplit(".", 1)[-1].isdigit():
            assert ours == expected, (name, done.stdout)
    elif name.isascii() and "two hyphens" in done.stderr:
        # Postfix converts only non-ASCII names to A-labels (allascii() skips IDNA), so an LDH
        # label with "--" in positions 3-4 is looked up as DNS holds it; libidn2 applies
        # IDNA 2008's hyphen rule (RFC 5891 §4.2.3.1) to pure-ASCII input as well.
        from mtasts.core.hostname import is_domain

        plain = name.lower()
        assert ours == (plain if is_domain(plain) and not plain.rsplit(".", 1)[-1].isdigit() else None), name
    else:
        assert ours is None, (name, done.stderr)
