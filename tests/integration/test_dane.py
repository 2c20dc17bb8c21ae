"""DANE-aware answers through the socketmap, with a real DNSSEC chain (Knot signs, Unbound validates).

RFC 8461 §2: MTA-STS must not override DANE. Every test domain also publishes an enforced
MTA-STS policy, so each answer shows which of the two won.
"""

from __future__ import annotations

import json
import os
import types

import pytest

from tests.integration.conftest import Daemon, policy_text
from tests.integration.dnssec import RESOLVER_ADDRESS, DnssecWorld, Zone, available, port_free
from tests.integration.policyhost import Site

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
        z("dane-some.test", [("@", "MX", "10 mx1"), ("@", "MX", "20 mx2"), ("mx1", "A", "127.8.9.12"),
                             ("mx2", "A", "127.8.9.13"), ("_25._tcp.mx1", "TLSA", TLSA)]),
        z("unusable.test", [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.14"),
                            ("_25._tcp.mx1", "TLSA", TLSA_UNUSABLE)]),
        z("unsigned-tlsa.test", [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.15"), ("_25._tcp.mx1", "TLSA", TLSA)],
          signed=False),
        z("signed-notlsa.test", [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.16")]),
        z("implicit.test", [("@", "A", "127.8.9.17"), ("_25._tcp", "TLSA", TLSA)]),
        z("nullmx.test", [("@", "MX", "0 .")]),
        z("mx-bogus.test", [("@", "MX", "10 mx1.bogus.test.")]),
        z("bogus.test", [("@", "MX", "10 mx1"), ("mx1", "A", "127.8.9.18"), ("_25._tcp.mx1", "TLSA", TLSA)],
          bogus=True),
    ]


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


@pytest.mark.parametrize("domain,answer", [
    ("dane-all.test", "OK dane-only"),  # every MX has usable TLSA: MTA-STS must not override it
    ("dane-some.test", "OK dane"),  # one of two MX hosts
    ("implicit.test", "OK dane-only"),  # no MX: the domain itself, _25._tcp.implicit.test
    ("nullmx.test", "NOTFOUND "),  # RFC 7505: accepts no mail
    ("mx-bogus.test", "OK dane"),  # signed MX, its host fails validation: Postfix decides
])
def test_dane_answers(daemon, domain, answer):
    assert daemon.query(domain) == answer


@pytest.mark.parametrize("domain", ["unsigned-tlsa.test", "signed-notlsa.test", "unusable.test"])
def test_mta_sts_answers_where_dane_does_not_apply(daemon, domain):
    # Unsigned zone with TLSA (not DANE), signed without TLSA, signed with only unusable TLSA.
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
        {"host": "mx1.dane-some.test", "state": "usable", "tlsa": [TLSA]},
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
