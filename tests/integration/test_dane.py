"""DANE-aware answers through the socketmap, with a real DNSSEC chain (Knot signs, Unbound validates).

RFC 8461 §2: MTA-STS must not override DANE. Every test domain also publishes an enforced
MTA-STS policy, so each answer shows which of the two won.
"""

from __future__ import annotations

import json
import os
import types

import pytest

from tests.integration.conftest import Daemon
from tests.support.dnssec import RESOLVER_ADDRESS, DnssecWorld, Zone, available, port_free
from tests.support.policies import policy_text
from tests.support.policyhost import Site

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="port 53 on 127.8.9.x needs root"),
    pytest.mark.skipif(not available(), reason="knot and unbound are not installed (.ci/run installs them)"),
]

TLSA = "3 1 1 " + "a1" * 32
TLSA_UNUSABLE = "1 1 1 " + "b2" * 32  # PKIX-EE: not usable for SMTP (RFC 7672 §3.1.3)


def sts(zone: str, policy_ip: str):
    """The MTA-STS records every test zone carries."""
    return [("_mta-sts", "TXT", '"v=STSv1; id=1;"'), ("mta-sts", "A", policy_ip)]


def zones(policy_ip: str):
    def z(name, records, **kw):
        return Zone(name, sts(name, policy_ip) + records, **kw)

    return [
        z("dane-all.test", [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.11"), ("_25._tcp.mx1", "TLSA", TLSA)]),
        z(
            "dane-some.test",
            [
                ("@", "MX", "10 mx1"),
                ("@", "MX", "20 mx2"),
                ("mx1", "A", "127.8.9.12"),
                ("mx2", "A", "127.8.9.13"),
                ("_25._tcp.mx1", "TLSA", TLSA),
            ],
        ),
        z(
            "unusable.test",
            [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.14"), ("_25._tcp.mx1", "TLSA", TLSA_UNUSABLE)],
        ),
        z(
            "unsigned-tlsa.test",
            [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.15"), ("_25._tcp.mx1", "TLSA", TLSA)],
            signed=False,
        ),
        z("signed-notlsa.test", [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.16")]),
        z("implicit.test", [("@", "A", "127.8.9.17"), ("_25._tcp", "TLSA", TLSA)]),
        z("nullmx.test", [("@", "MX", "0 .")]),
        z("mx-bogus.test", [("@", "MX", "10 mx1.bogus.test.")]),
        z(
            "bogus.test",
            [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.18"), ("_25._tcp.mx1", "TLSA", TLSA)],
            bogus=True,
        ),
        # The MX host is an alias; TLSA only at its target (RFC 7672 §2.2.2: looked up there first).
        z(
            "cname-mx.test",
            [
                ("@", "MX", "10 mx1"),
                ("mx1", "CNAME", "target"),
                ("target", "A", "127.8.9.19"),
                ("_25._tcp.target", "TLSA", TLSA),
            ],
        ),
        # TLSA at the alias only: the original name is the fallback.
        z(
            "cname-alias.test",
            [
                ("@", "MX", "10 mx1"),
                ("mx1", "CNAME", "target"),
                ("target", "A", "127.8.9.20"),
                ("_25._tcp.mx1", "CNAME", "tlsa-data"),
                ("tlsa-data", "TLSA", TLSA),
            ],
        ),
        # The TLSA name sits behind a broken delegation (a DS no key of the child matches):
        # the validator answers SERVFAIL, a temporary failure, as for a lame delegation.
        z("lame.test", [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.21")] + broken_delegation("_tcp.mx1")),
        Zone("_tcp.mx1.lame.test", [("_25", "TLSA", TLSA)], signed=False),
        z(
            "lame-some.test",
            [
                ("@", "MX", "10 mx1"),
                ("@", "MX", "20 mx2"),
                ("mx1", "A", "127.8.9.22"),
                ("mx2", "A", "127.8.9.23"),
                ("_25._tcp.mx1", "TLSA", TLSA),
            ]
            + broken_delegation("_tcp.mx2"),
        ),
        Zone("_tcp.mx2.lame-some.test", [("_25", "TLSA", TLSA)], signed=False),
        # A submission relay: its MX (no TLSA) is not where Postfix goes for [relay.test]:587.
        z(
            "relay.test",
            [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.24"), ("@", "A", "127.8.9.25"), ("_587._tcp", "TLSA", TLSA)],
        ),
        # RFC 7505 violated: a null MX among others. Postfix bounces (DNS_NULLMX).
        z(
            "nullmx-mixed.test",
            [("@", "MX", "0 ."), ("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.26"), ("_25._tcp.mx1", "TLSA", TLSA)],
        ),
    ]


def broken_delegation(owner):
    """A child zone the parent vouches for with a DS record that matches no key of it."""
    return [(owner, "NS", "ns"), (owner, "DS", "12345 13 2 " + "ab" * 32)]


POLICY_MX = {
    "dane-all.test": ("mx1.dane-all.test",),
    "dane-some.test": ("mx1.dane-some.test", "mx2.dane-some.test"),
    "unusable.test": ("mx1.unusable.test",),
    "unsigned-tlsa.test": ("mx1.unsigned-tlsa.test",),
    "signed-notlsa.test": ("mx1.signed-notlsa.test",),
    "implicit.test": ("implicit.test",),
    "nullmx.test": ("mx.nullmx.test",),
    "mx-bogus.test": ("mx1.bogus.test",),
    "bogus.test": ("mx1.bogus.test",),
    "cname-mx.test": ("mx1.cname-mx.test",),
    "cname-alias.test": ("mx1.cname-alias.test",),
    "lame.test": ("mx1.lame.test",),
    "lame-some.test": ("mx1.lame-some.test", "mx2.lame-some.test"),
    "relay.test": ("relay.test", "mx1.relay.test"),
    "nullmx-mixed.test": ("mx1.nullmx-mixed.test",),
}


@pytest.fixture(scope="module")
def dnssec(policy_host, tmp_path_factory):
    if not port_free(RESOLVER_ADDRESS):
        pytest.skip(f"{RESOLVER_ADDRESS}:53 is taken")
    for domain, mx in POLICY_MX.items():
        policy_host.sites[f"mta-sts.{domain}"] = Site(body=policy_text(mx=mx, domain=domain))
    world = DnssecWorld(tmp_path_factory.mktemp("dnssec"), zones(policy_host.ip_for(""))).start()
    yield world
    world.close()


@pytest.fixture(scope="module")
def daemon(dnssec, policy_host, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dane-daemon")
    ca = tmp / "ca.pem"
    policy_host.ca.cert_pem.write_to_path(str(ca))
    resolver = types.SimpleNamespace(address=RESOLVER_ADDRESS)
    d = Daemon(tmp, resolver, str(ca), '[dane]\nprobe = "dane-all.test"\n').start()
    yield d
    d.stop()


def secure(domain):
    return "OK secure match=" + ":".join(POLICY_MX[domain]) + " servername=hostname"


def test_the_chain_is_real(dnssec):
    import dns.flags
    import dns.rcode

    signed = dnssec.ask("dane-all.test.", "MX")
    assert signed.flags & dns.flags.AD and signed.rcode() == dns.rcode.NOERROR
    assert any(rrset.rdtype == 46 for rrset in signed.answer)  # RRSIG alongside (DO bit)
    unsigned = dnssec.ask("unsigned-tlsa.test.", "MX")
    assert not unsigned.flags & dns.flags.AD and unsigned.answer
    assert dnssec.ask("bogus.test.", "MX").rcode() == dns.rcode.SERVFAIL


def wait_for_log(daemon, text, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while text not in daemon.log():
        assert time.monotonic() < deadline, daemon.log()
        time.sleep(0.05)


def test_resolver_validation_is_logged_at_start(daemon):
    wait_for_log(daemon, "DANE: the resolver validates DNSSEC (AD bit for 'dane-all.test')")


@pytest.mark.parametrize(
    "domain,answer",
    [
        ("dane-all.test", "OK dane-only"),  # every MX has usable TLSA: MTA-STS must not override it
        ("dane-some.test", "OK dane"),  # one of two MX hosts
        ("implicit.test", "OK dane-only"),  # no MX: the domain itself, _25._tcp.implicit.test
        ("nullmx.test", "NOTFOUND "),  # RFC 7505: accepts no mail
    ],
)
def test_dane_answers(daemon, domain, answer):
    assert daemon.query(domain) == answer


@pytest.mark.parametrize("domain", ["unsigned-tlsa.test", "signed-notlsa.test", "unusable.test", "mx-bogus.test"])
def test_mta_sts_answers_where_dane_does_not_apply(daemon, domain):
    # Unsigned zone with TLSA (not DANE), signed without TLSA, signed with only unusable TLSA;
    # a signed MX whose host fails validation, never seen with usable TLSA: a temporary
    # failure does not make a DANE domain (Postfix cannot resolve that host either way).
    assert daemon.query(domain) == secure(domain)


def test_validation_failure_is_not_answered_with_mta_sts(daemon):
    # Everything in bogus.test is SERVFAIL from the validator, its MTA-STS record too: no
    # policy can be learned, and the answer leaves the domain to Postfix, which defers it.
    assert daemon.query("bogus.test") == "NOTFOUND "
    assert "bogus.test: _mta-sts TXT lookup failed (servfail" in daemon.log()


def test_cached_answers_keep_the_dane_state(daemon):
    for _ in range(3):
        assert daemon.query("dane-all.test") == "OK dane-only"
        assert daemon.query("signed-notlsa.test") == secure("signed-notlsa.test")
    stats = json.loads(daemon.cli("cache", "stats", "--json").stdout)["stats"]
    assert stats["dane_checks"] <= len(POLICY_MX)  # one check per domain, then answers from cache


def test_cache_show_and_query_display_the_dane_state(daemon):
    daemon.query("dane-some.test")
    shown = json.loads(daemon.cli("cache", "show", "dane-some.test", "--json").stdout)["entry"]["dane"]
    assert shown["state"] == "dane"
    assert shown["hosts"] == [
        {"host": "mx1.dane-some.test", "state": "usable", "tlsa": [TLSA], "tlsa_name": "_25._tcp.mx1.dane-some.test"},
        {"host": "mx2.dane-some.test", "state": "no-tlsa", "tlsa": []},
    ]
    text = daemon.cli("cache", "show", "dane-some.test").stdout
    assert "dane:           dane" in text and f"TLSA {TLSA}" in text
    live = daemon.cli("query", "dane-all.test", "--json")
    report = json.loads(live.stdout)
    assert report["dane"]["state"] == "dane-only" and report["answer"] == "OK dane-only"
    assert report["dane"]["hosts"][0]["tlsa"] == [TLSA]


def test_dane_off_gives_the_mta_sts_answer(dnssec, policy_host, tmp_path):
    ca = tmp_path / "ca.pem"
    policy_host.ca.cert_pem.write_to_path(str(ca))
    d = Daemon(tmp_path, types.SimpleNamespace(address=RESOLVER_ADDRESS), str(ca), '[dane]\nmode = "off"\n').start()
    try:
        assert d.query("dane-all.test") == secure("dane-all.test")
        assert "DANE:" not in d.log()
    finally:
        d.stop()


def test_non_validating_resolver_is_reported(make_daemon):
    # The plain test DNS server sets no AD bit: the daemon says so at start-up.
    d = make_daemon('[dane]\nprobe = "signed.example"\n')
    wait_for_log(d, "DANE: no AD bit for 'signed.example'")


# -- DANE names as Postfix looks them up (RFC 7672 §2.2.2) ------------------------------


def test_cname_mx_host_is_checked_at_its_target_first(daemon):
    # Only _25._tcp.target.cname-mx.test has TLSA: answering secure here would override
    # the DANE Postfix itself finds there.
    assert daemon.query("cname-mx.test") == "OK dane-only"
    shown = json.loads(daemon.cli("cache", "show", "cname-mx.test", "--json").stdout)["entry"]["dane"]
    assert shown["hosts"] == [
        {"host": "mx1.cname-mx.test", "state": "usable", "tlsa": [TLSA], "tlsa_name": "_25._tcp.target.cname-mx.test"}
    ]


def test_cname_mx_host_falls_back_to_the_original_name(daemon):
    assert daemon.query("cname-alias.test") == "OK dane-only"
    shown = json.loads(daemon.cli("cache", "show", "cname-alias.test", "--json").stdout)["entry"]["dane"]
    assert shown["hosts"][0]["tlsa_name"] == "_25._tcp.mx1.cname-alias.test"


def test_relay_key_with_port_is_checked_at_that_port_without_mx_lookup(daemon):
    # [relay.test]:587: Postfix connects to relay.test itself and looks at _587._tcp.relay.test.
    assert daemon.query("[relay.test]:587") == "OK dane-only"
    # The recipient domain relay.test goes to its MX, which has no TLSA on port 25.
    assert daemon.query("relay.test") == secure("relay.test")
    # [relay.test] (port 25, no MX): no _25._tcp.relay.test TLSA.
    assert daemon.query("[relay.test]") == secure("relay.test")
    # relay.test:587 looks up the MX, then _587._tcp.mx1.relay.test: none.
    assert daemon.query("relay.test:587") == secure("relay.test")
    assert "[relay.test]:587: DANE dane-only (relay.test usable)" in daemon.log()


def test_null_mx_among_other_records_is_answered_as_postfix_treats_it(daemon):
    assert daemon.query("nullmx-mixed.test") == "NOTFOUND "


def test_temporary_tlsa_failure_on_a_domain_never_seen_with_dane_keeps_mta_sts(daemon):
    # Answering "dane" here would let Postfix fall back to "may" for an MX without TLSA:
    # one delayed DNS answer would undo the enforced MTA-STS policy.
    assert daemon.query("lame.test") == secure("lame.test")
    shown = json.loads(daemon.cli("cache", "show", "lame.test", "--json").stdout)["entry"]["dane"]
    assert shown["state"] == "unknown" and shown["hosts"][0]["state"] == "tempfail"


def test_temporary_failure_beside_a_usable_host_leaves_it_to_postfix(daemon):
    assert daemon.query("lame-some.test") == "OK dane"


def test_temporary_failure_after_usable_tlsa_answers_dane(dnssec):
    # The same lame TLSA lookup, now for a domain whose last check had usable TLSA:
    # Postfix decides with its own lookups (dane), MTA-STS must not override a DANE domain.
    import asyncio

    from mtasts.config import Config
    from mtasts.core.dane import DaneResult, DaneState
    from mtasts.core.nexthop import NextHop
    from mtasts.net.dane import DaneChecker
    from mtasts.net.dns import DnsClient

    async def check(previous):
        client = DnsClient([(RESOLVER_ADDRESS, 53)], 3.0)
        return await DaneChecker(client, failure_ttl=60.0, min_ttl=60.0, max_ttl=3600.0).check(
            NextHop("lame.test"), 1000.0, previous
        )

    never = asyncio.run(check(None))
    assert never.state is DaneState.UNKNOWN and never.expires_at == 1000.0 + Config().cache.failure_ttl
    before = DaneResult(DaneState.ALL, 500.0, 900.0)
    after = asyncio.run(check(before))
    assert after.state is DaneState.TEMPFAIL
    from mtasts.core.dane import dane_reply

    assert dane_reply(never) is None and dane_reply(after) == b"OK dane"


# -- the Postfix that reads the answers -------------------------------------------------

FAKE_POSTCONF = """#!/bin/sh
# A stand-in for Postfix {version}'s postconf: "name = value" for what it knows.
for name in "$@"; do
  case "$name" in
    -c) shift 2; continue ;;
    mail_version) echo "mail_version = {version}" ;;
    smtp_dns_support_level) {dns} ;;
    smtp_tlsrpt_enable) {tlsrpt} ;;
  esac
done
"""


def fake_postconf(directory, version, dnssec=False, tlsrpt=False):
    major_minor = tuple(int(x) for x in version.split(".")[:2])
    unknown = 'echo "postconf: warning: $name: unknown parameter" >&2'
    dns = unknown if major_minor < (2, 11) else f'echo "smtp_dns_support_level = {"dnssec" if dnssec else ""}"'
    rpt = unknown if major_minor < (3, 10) else f'echo "smtp_tlsrpt_enable = {"yes" if tlsrpt else "no"}"'
    path = directory / f"postconf-{version}-{int(dnssec)}{int(tlsrpt)}"
    path.write_text(FAKE_POSTCONF.format(version=version, dns=dns, tlsrpt=rpt))
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    "version,with_dnssec,tlsrpt,answer",
    [
        # CentOS 7: no dane level, no servername=: the MTA-STS answer it can read.
        ("2.10.1", False, False, "OK secure match=mx1.dane-all.test"),
        ("2.10.1", True, False, "OK secure match=mx1.dane-all.test"),
        ("3.3.1", True, False, "OK dane-only"),
        ("3.3.1", False, False, "OK secure match=mx1.dane-all.test"),
        # No DNSSEC lookups: dane-only would be deferred, dane would become may.
        ("3.7.11", False, False, "OK secure match=mx1.dane-all.test servername=hostname"),
        ("3.7.11", True, False, "OK dane-only"),
        ("3.10.13", True, True, "OK dane-only"),
    ],
)
def test_answers_fit_the_postfix_that_reads_them(dnssec, policy_host, tmp_path, version, with_dnssec, tlsrpt, answer):
    ca = tmp_path / "ca.pem"
    policy_host.ca.cert_pem.write_to_path(str(ca))
    postconf = fake_postconf(tmp_path, version, with_dnssec, tlsrpt)
    d = Daemon(
        tmp_path,
        types.SimpleNamespace(address=RESOLVER_ADDRESS),
        str(ca),
        f'[dane]\nprobe = "dane-all.test"\n[postfix]\npostconf = "{postconf}"\n',
    ).start()
    try:
        assert d.query("dane-all.test") == answer
        assert f"Postfix {version}" in d.log()
        if not answer.startswith("OK dane"):
            assert "DANE:" not in d.log()  # no DANE lookups where no DANE answer can be given
    finally:
        d.stop()


def test_an_explicit_setting_postfix_cannot_use_wins_with_a_warning(dnssec, policy_host, tmp_path):
    ca = tmp_path / "ca.pem"
    policy_host.ca.cert_pem.write_to_path(str(ca))
    d = Daemon(
        tmp_path,
        types.SimpleNamespace(address=RESOLVER_ADDRESS),
        str(ca),
        '[postfix]\nversion = "2.10.1"\n[maps.centos]\nsni = true\n',
    ).start()
    try:
        assert d.query("signed-notlsa.test", "centos") == secure("signed-notlsa.test")
        assert d.query("signed-notlsa.test") == "OK secure match=mx1.signed-notlsa.test"
        assert "WARNING " + str(d.config) + ": [maps.centos] sni = true: Postfix 2.10.1 rejects servername=" in d.log()
    finally:
        d.stop()


def test_the_real_postconf_is_read(dnssec, policy_host, tmp_path):
    # Debian's Postfix (3.7) with its own config_directory, as `postconf -c` reads it.
    import shutil

    if not shutil.which("postconf"):
        pytest.skip("Postfix is not installed (.ci/run installs it)")
    ca = tmp_path / "ca.pem"
    policy_host.ca.cert_pem.write_to_path(str(ca))
    etc = tmp_path / "postfix"
    etc.mkdir()
    (etc / "main.cf").write_text("compatibility_level = 3.6\nsmtp_dns_support_level = dnssec\n")
    d = Daemon(
        tmp_path,
        types.SimpleNamespace(address=RESOLVER_ADDRESS),
        str(ca),
        f'[dane]\nprobe = "dane-all.test"\n[postfix]\nconfig_directory = "{etc}"\n',
    ).start()
    try:
        assert d.query("dane-all.test") == "OK dane-only"
        (etc / "main.cf").write_text("compatibility_level = 3.6\n")
        d.proc.send_signal(__import__("signal").SIGHUP)  # learnt again on SIGHUP
        wait_for_log(d, "configuration reloaded")
        assert "no DNSSEC lookups" in d.log()
        d.cli("cache", "purge", "--all")
        assert d.query("dane-all.test") == secure("dane-all.test")
    finally:
        d.stop()
