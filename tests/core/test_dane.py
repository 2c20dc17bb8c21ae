"""DANE decisions (RFC 7672) over what the DNS said: core/dane.py."""

from hypothesis import given
from hypothesis import strategies as st

from mtasts.core.answer import dane_applies
from mtasts.core.dane import (
    DaneResult,
    DaneState,
    HostDane,
    HostState,
    Tlsa,
    after_mx_failure,
    bounded_ttl,
    dane_reply,
    domain_state,
    had_usable_tlsa,
    host_state,
    is_null_mx,
    result_from_json,
    result_to_json,
    tlsa_names,
)

SHA256 = bytes(32)
SHA512 = bytes(64)


def test_usable_tlsa_records():
    # RFC 7672 §3.1: DANE-TA(2) and DANE-EE(3); selector Cert(0)/SPKI(1); matching Full/SHA-256/SHA-512.
    assert Tlsa(3, 1, 1, SHA256).usable
    assert Tlsa(2, 0, 2, SHA512).usable
    assert Tlsa(3, 0, 0, b"\x30\x82").usable
    assert not Tlsa(1, 1, 1, SHA256).usable  # PKIX-EE: not for SMTP
    assert not Tlsa(0, 1, 1, SHA256).usable  # PKIX-TA
    assert not Tlsa(3, 2, 1, SHA256).usable  # unknown selector
    assert not Tlsa(3, 1, 3, SHA256).usable  # unknown matching type
    assert not Tlsa(3, 1, 1, bytes(31)).usable  # SHA-256 of the wrong length
    assert not Tlsa(3, 1, 2, SHA256).usable  # SHA-512 field holding 32 bytes
    assert not Tlsa(3, 1, 0, b"").usable
    assert str(Tlsa(3, 1, 1, b"\xab" * 32)) == "3 1 1 " + "ab" * 32


def test_host_states():
    usable, unusable = [Tlsa(3, 1, 1, SHA256)], [Tlsa(1, 1, 1, SHA256)]
    assert host_state(True, True, usable) is HostState.USABLE
    assert host_state(True, True, unusable + usable) is HostState.USABLE
    assert host_state(True, True, unusable) is HostState.NO_TLSA
    assert host_state(True, True, []) is HostState.NO_TLSA
    assert host_state(False, True, usable) is HostState.INSECURE  # insecure addresses: no DANE
    assert host_state(True, False, usable) is HostState.INSECURE  # TLSA in an unsigned zone
    assert host_state(None, None, []) is HostState.TEMPFAIL
    assert host_state(True, None, []) is HostState.TEMPFAIL


def hosts(*states):
    return [HostDane(f"mx{i}.example", s) for i, s in enumerate(states)]


def test_domain_states():
    assert domain_state(hosts(HostState.USABLE, HostState.USABLE)) is DaneState.ALL
    assert domain_state(hosts(HostState.USABLE, HostState.NO_TLSA)) is DaneState.PARTIAL
    assert domain_state(hosts(HostState.USABLE, HostState.INSECURE)) is DaneState.PARTIAL
    assert domain_state(hosts(HostState.NO_TLSA, HostState.INSECURE)) is DaneState.NO_TLSA
    assert domain_state(hosts(HostState.USABLE, HostState.TEMPFAIL)) is DaneState.TEMPFAIL
    assert domain_state([]) is DaneState.NO_TLSA


def test_a_failed_lookup_gives_dane_only_to_a_domain_that_had_usable_tlsa():
    # Postfix's "dane" is "may" for every MX without TLSA: for a domain never seen with
    # DANE, one delayed answer must not turn enforced MTA-STS into opportunistic TLS.
    failing = hosts(HostState.NO_TLSA, HostState.TEMPFAIL)
    assert domain_state(failing) is DaneState.UNKNOWN
    assert domain_state(failing, result(DaneState.NO_TLSA)) is DaneState.UNKNOWN
    assert domain_state(failing, result(DaneState.UNSIGNED)) is DaneState.UNKNOWN
    assert domain_state(failing, result(DaneState.PARTIAL)) is DaneState.TEMPFAIL
    assert domain_state(failing, result(DaneState.ALL)) is DaneState.TEMPFAIL
    assert domain_state(failing, result(DaneState.TEMPFAIL)) is DaneState.TEMPFAIL  # still failing
    assert dane_reply(result(domain_state(failing))) is None  # the MTA-STS answer stands


def test_null_mx_among_other_records_is_a_null_mx():
    # Postfix's dns_get_rr() returns DNS_NULLMX for any "." exchange, whatever else is there.
    assert is_null_mx(["."])
    assert is_null_mx(["mx1.example", "."])
    assert not is_null_mx(["mx1.example", "mx2.example"])


def test_tlsa_names_follow_postfix():
    # RFC 7672 §2.2.2: the CNAME-expanded name first, then the original name.
    assert tlsa_names("mx.example", "mx.example", 25) == ("_25._tcp.mx.example",)
    assert tlsa_names("mx.example", "", 25) == ("_25._tcp.mx.example",)
    assert tlsa_names("mx.example", "real.example.net", 25) == ("_25._tcp.real.example.net", "_25._tcp.mx.example")
    assert tlsa_names("relay.example", "relay.example", 587) == ("_587._tcp.relay.example",)


def test_dane_applies_only_where_the_profile_answers_dane():
    sts = b"OK secure match=mx.example"
    assert dane_applies(sts, "prefer", True)
    assert not dane_applies(sts, "prefer", False)  # a Postfix without DNSSEC lookups
    assert not dane_applies(sts, "off", True)
    assert not dane_applies(b"NOTFOUND ", "prefer", True)


def result(state):
    return DaneResult(state, 100.0, 200.0)


def test_replies():
    assert dane_reply(result(DaneState.ALL)) == b"OK dane-only"
    assert dane_reply(result(DaneState.PARTIAL)) == b"OK dane"
    assert dane_reply(result(DaneState.TEMPFAIL)) == b"OK dane"  # Postfix decides, not MTA-STS
    assert dane_reply(result(DaneState.NULL_MX)) == b"NOTFOUND "
    for state in (DaneState.UNSIGNED, DaneState.NO_TLSA, DaneState.UNKNOWN):
        assert dane_reply(result(state)) is None  # the MTA-STS answer stands
    assert dane_reply(None) is None


def test_mx_failure_keeps_a_domain_with_usable_tlsa_with_postfix():
    assert after_mx_failure(result(DaneState.ALL)) is DaneState.TEMPFAIL
    assert after_mx_failure(result(DaneState.PARTIAL)) is DaneState.TEMPFAIL
    assert after_mx_failure(result(DaneState.TEMPFAIL)) is DaneState.TEMPFAIL
    assert after_mx_failure(result(DaneState.NO_TLSA)) is DaneState.UNKNOWN  # signed, but never DANE
    assert after_mx_failure(result(DaneState.UNSIGNED)) is DaneState.UNKNOWN
    assert after_mx_failure(None) is DaneState.UNKNOWN
    assert not had_usable_tlsa(result(DaneState.NULL_MX))


def test_bounded_ttl():
    assert bounded_ttl([300, 7200], 60, 3600) == 300
    assert bounded_ttl([5], 60, 3600) == 60
    assert bounded_ttl([86400], 60, 3600) == 3600
    assert bounded_ttl([], 60, 3600) == 3600


def test_freshness():
    assert result(DaneState.ALL).fresh(199.9) and not result(DaneState.ALL).fresh(200.0)


@given(
    state=st.sampled_from(list(DaneState)),
    times=st.tuples(st.floats(0, 2e9), st.floats(0, 2e9)),
    host_list=st.lists(
        st.tuples(
            st.from_regex(r"[a-z0-9.-]{1,30}", fullmatch=True),
            st.sampled_from(list(HostState)),
            st.lists(st.text(max_size=20), max_size=3),
            st.sampled_from(["", "_25._tcp.real.example"]),
        ),
        max_size=4,
    ),
    detail=st.text(max_size=30),
)
def test_json_round_trip(state, times, host_list, detail):
    r = DaneResult(state, times[0], times[1], tuple(HostDane(h, s, tuple(t), n) for h, s, t, n in host_list), detail)
    assert result_from_json(result_to_json(r)) == r


def test_non_loopback_nameservers_from_the_dns_client():
    # The warning must look at addresses, not at dnspython's "Do53:127.0.0.1@53" display form.
    from mtasts.net.dane import non_loopback
    from mtasts.net.dns import DnsClient

    client = DnsClient([("127.0.0.1", 5353), ("::1", 53), ("192.0.2.1", 53)], 2.0)
    assert client.nameserver_addresses == ["127.0.0.1", "::1", "192.0.2.1"]
    assert non_loopback(client.nameserver_addresses) == ["192.0.2.1"]
