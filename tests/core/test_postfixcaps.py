"""Which answers each Postfix can use: core/postfixcaps.py."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.core.policy import parse_policy
from mtasts.core.policyanswer import read_answer
from mtasts.core.postfixcaps import (
    Capabilities,
    PostfixInfo,
    capabilities,
    fit_profile,
    fit_profiles,
    parse_postconf,
    parse_version,
)
from mtasts.core.reply import MapProfile, tls_policy_reply


@pytest.mark.parametrize(
    "text,version",
    [
        ("3.7.11", (3, 7, 11)),
        ("2.10.1", (2, 10, 1)),
        ("3.10", (3, 10, 0)),
        ("3.11-20250101", (3, 11, 0)),  # a snapshot
        ("3.8.0-RC1", (3, 8, 0)),
        (" 3.4.0\n", (3, 4, 0)),
        ("", None),
        ("unknown", None),
        ("3", None),
    ],
)
def test_versions(text, version):
    assert parse_version(text) == version


def test_postconf_output():
    # Postfix 2.10 knows neither smtp_dns_support_level nor smtp_tlsrpt_enable: it prints
    # a warning on stderr and only the line it knows.
    assert parse_postconf("mail_version = 2.10.1\n") == {"mail_version": "2.10.1"}
    assert parse_postconf("mail_version = 3.7.11\nsmtp_dns_support_level =\n") == {
        "mail_version": "3.7.11",
        "smtp_dns_support_level": "",
    }


def info(version, dnssec=False, tlsrpt=False):
    return PostfixInfo(parse_version(version) if version else None, dnssec, tlsrpt)


@pytest.mark.parametrize(
    "postfix,caps",
    [
        (info("2.10.1", dnssec=True), Capabilities(sni=False, dane=False, tlsrpt=False)),  # CentOS 7: no dane level
        (info("2.11.0", dnssec=True), Capabilities(sni=False, dane=True, tlsrpt=False)),
        (info("3.3.1"), Capabilities(sni=False, dane=False, tlsrpt=False)),
        (info("3.3.1", dnssec=True), Capabilities(sni=False, dane=True, tlsrpt=False)),
        (info("3.4.0"), Capabilities(sni=True, dane=False, tlsrpt=False)),
        (info("3.7.11"), Capabilities(sni=True, dane=False, tlsrpt=False)),  # dane would become may
        (info("3.7.11", dnssec=True), Capabilities(sni=True, dane=True, tlsrpt=False)),
        (info("3.7.11", tlsrpt=True), Capabilities(sni=True, dane=False, tlsrpt=False)),
        (info("3.10.13", dnssec=True), Capabilities(sni=True, dane=True, tlsrpt=False)),  # smtp_tlsrpt_enable = no
        (info("3.10.13", dnssec=True, tlsrpt=True), Capabilities(sni=True, dane=True, tlsrpt=True)),
        (info(None, dnssec=True, tlsrpt=True), Capabilities(sni=False, dane=False, tlsrpt=False)),  # unknown
    ],
)
def test_capabilities(postfix, caps):
    assert capabilities(postfix) == caps


def test_from_postconf():
    found = PostfixInfo.from_postconf(
        {"mail_version": "3.10.13", "smtp_dns_support_level": "dnssec", "smtp_tlsrpt_enable": "yes"}, "postconf"
    )
    assert (found.version, found.dnssec, found.tlsrpt) == ((3, 10, 13), True, True)
    plain = PostfixInfo.from_postconf({"mail_version": "3.7.11", "smtp_dns_support_level": "enabled"}, "postconf")
    assert (plain.dnssec, plain.tlsrpt) == (False, False)


def test_unset_features_follow_postfix_and_explicit_ones_win_with_a_warning():
    explicit = MapProfile(sni=True, dane=True, tlsrpt=True, explicit=frozenset({"sni", "dane", "tlsrpt"}))
    fitted, warnings = fit_profile("postfix", explicit, info("2.10.1"))
    assert (fitted.sni, fitted.dane, fitted.tlsrpt) == (True, True, True)
    assert [w.split(":")[0] for w in warnings] == [
        "[maps.postfix] sni = true",
        "[maps.postfix] dane = true",
        "[maps.postfix] tlsrpt = true",
    ]
    assert "rejects servername=" in warnings[0] and "deferred" in warnings[0]
    assert "has no dane level" in warnings[1]

    fitted, warnings = fit_profile("postfix", MapProfile(), info("2.10.1"))
    assert (fitted.sni, fitted.dane, fitted.tlsrpt) == (False, False, False) and warnings == []

    no_dnssec = fit_profile("p", MapProfile(dane=True, explicit=frozenset({"dane"})), info("3.7.11"))[1]
    assert no_dnssec == [
        "[maps.p] dane = true: Postfix 3.7.11 without smtp_dns_support_level = dnssec: dane-only"
        " is invalid there (mail deferred) and dane becomes may (MTA-STS protection lost)"
    ]

    # An explicit "off" never warns: it is always safe.
    off = MapProfile(sni=False, dane=False, explicit=frozenset({"sni", "dane"}))
    fitted, warnings = fit_profile("p", off, info("3.10.13", dnssec=True, tlsrpt=True))
    assert (fitted.sni, fitted.dane, fitted.tlsrpt) == (False, False, True) and warnings == []


def test_the_default_profile_is_fitted_too():
    maps, default, _ = fit_profiles({"postfix": MapProfile()}, MapProfile(), info("3.3.1"))
    assert not maps["postfix"].sni and not default.sni
    named = MapProfile(testing="enforce")
    maps, default, _ = fit_profiles({"default": named}, named, info("3.7.11", dnssec=True))
    assert default is maps["default"] and default.testing == "enforce" and default.dane


POLICY = parse_policy(
    b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com.\r\nmx: *.example.net\r\nmax_age: 86400\r\n"
)


@given(st.sampled_from(["2.10.1", "2.11.7", "3.3.1", "3.4.0", "3.7.11", "3.10.13", None]), st.booleans(), st.booleans())
def test_every_fitted_answer_reads_back_with_only_what_that_postfix_knows(version, dnssec, tlsrpt):
    postfix = info(version, dnssec, tlsrpt)
    fitted, _ = fit_profile("postfix", MapProfile(), postfix)
    answer = tls_policy_reply("example.com", POLICY, fitted).decode()
    assert answer.startswith("OK secure match=mail.example.com:.example.net")
    _level, attributes = read_answer(answer[3:])
    names = {name for name, _value in attributes}
    known = {"match"}
    if postfix.version and postfix.version >= (3, 4, 0):
        known.add("servername")
    if postfix.version and postfix.version >= (3, 10, 0):
        known |= {"policy_type", "policy_domain", "mx_host_pattern", "policy_string"}
    assert names <= known, (version, names)
