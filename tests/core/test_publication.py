"""Publisher core: canonical policy text, derived ids, DNS records (RFC 8461 §3.1, §3.2; RFC 8460 §3)."""

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts.config import parse_config
from mtasts.core.policy import Mode, parse_policy
from mtasts.core.publication import (
    PublishedDomain,
    encode_rua,
    policy_id,
    policy_text,
    records,
    sts_record,
    tlsrpt_record,
    txt_rdata,
    zone_lines,
)
from mtasts.core.txtrecord import select_record
from mtasts.errors import ConfigError

D = PublishedDomain(
    "example.com",
    Mode.ENFORCE,
    ("mx1.example.com", "*.example.net"),
    604800,
    ("mailto:tlsrpt@example.com",),
    host_addresses=("192.0.2.10",),
)


def test_n141_canonical_text_passes_our_parser():
    body = policy_text(D)
    assert body == b"version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"
    p = parse_policy(body)
    assert p.mode is Mode.ENFORCE and [m.text for m in p.mx] == list(D.mx)


def test_none_mode_without_mx():
    body = policy_text(PublishedDomain("example.com", Mode.NONE, (), 86400))
    assert parse_policy(body).mode is Mode.NONE


def test_l127_sts_record_round_trips_through_our_sender_parser():
    record = select_record([sts_record(D).encode()])
    assert record.policy_id == policy_id(policy_text(D))
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", record.policy_id)


def test_l128_any_change_changes_the_id_and_no_change_keeps_it():
    base = policy_id(policy_text(D))
    assert policy_id(policy_text(D)) == base
    variants = [
        PublishedDomain("example.com", Mode.TESTING, D.mx, D.max_age),
        PublishedDomain("example.com", Mode.ENFORCE, D.mx[::-1], D.max_age),
        PublishedDomain("example.com", Mode.ENFORCE, D.mx, D.max_age + 1),
        PublishedDomain("example.com", Mode.ENFORCE, D.mx + ("mx2.example.com",), D.max_age),
    ]
    ids = {policy_id(policy_text(v)) for v in variants}
    assert base not in ids and len(ids) == len(variants)


@given(st.binary(min_size=1, max_size=200))
def test_ids_always_valid(body):
    assert re.fullmatch(r"[0-9a-f]{32}", policy_id(body))


def test_l131_tlsrpt_record_percent_encodes():
    assert encode_rua("mailto:tls,rpt!x;y@example.com") == "mailto:tls%2Crpt%21x%3By@example.com"
    d = PublishedDomain(
        "example.com", Mode.ENFORCE, ("mx.example.com",), 1, ("mailto:a,b@example.com", "https://r.example/tlsrpt")
    )
    assert tlsrpt_record(d) == "v=TLSRPTv1; rua=mailto:a%2Cb@example.com,https://r.example/tlsrpt"


def test_records_and_zone_lines():
    rs = records(D, 3600)
    assert [(r["name"], r["type"]) for r in rs] == [
        ("_mta-sts.example.com.", "TXT"),
        ("_smtp._tls.example.com.", "TXT"),
        ("mta-sts.example.com.", "A"),
    ]
    lines = zone_lines(D, 3600)
    assert lines[0] == f'_mta-sts.example.com.\t3600\tIN\tTXT\t"{sts_record(D)}"'
    bare = zone_lines(PublishedDomain("example.com", Mode.NONE, (), 1), 300)
    assert bare[-1].startswith("; mta-sts.example.com.") and len(bare) == 2
    cname = records(PublishedDomain("example.com", Mode.NONE, (), 1, host_cname="web.example.net"), 60)
    assert cname[-1] == {"name": "mta-sts.example.com.", "type": "CNAME", "ttl": 60, "value": "web.example.net."}


def test_l132_long_txt_split():
    assert txt_rdata("a" * 300) == '"' + "a" * 255 + '" "' + "a" * 45 + '"'
    assert txt_rdata('x"y') == '"x\\"y"'


def publish(domain_table):
    return parse_config({"publish": {"domains": {"example.com": domain_table}}}, "/etc/mtasts/mtasts.toml")


@pytest.mark.parametrize(
    "table,message",
    [
        ({"mx": ["mx*.example.net"]}, "a wildcard must be a whole leading label"),
        ({"mx": ["*.*.example.net"]}, "a wildcard must be a whole leading label"),
        ({"mx": ["example.*"]}, "a wildcard must be a whole leading label"),
        ({"mx": ["192.0.2.1"]}, "is an IP address"),
        ({"mx": ["a.example"], "max_age": 31557601}, "max_age must be between 0 and 31557600"),
        ({"mx": ["a.example"], "max_age": "1w"}, "max_age: expected a whole number"),
        ({"mode": "enforce"}, "mx: expected at least one MX host for mode enforce"),
        ({"mode": "testing", "mx": []}, "mx: expected at least one MX host for mode testing"),
        ({"mode": "report", "mx": ["a.example"]}, 'mode: expected "enforce", "testing" or "none"'),
        ({"mx": ["a.example"], "tlsrpt_rua": ["http://r.example/"]}, "must be a mailto: or https: URI"),
        ({"mx": ["a.example"], "colour": "blue"}, "colour: unknown key"),
        ({"mx": ["a.example"], "host_addresses": ["not-an-ip"]}, "host_addresses: expected a list of IP addresses"),
    ],
)
def test_config_errors_say_what_is_wrong(table, message):
    with pytest.raises(ConfigError) as err:
        publish(table)
    assert str(err.value).startswith('/etc/mtasts/mtasts.toml: [publish.domains."example.com"]')
    assert message in str(err.value)


def test_none_mode_needs_no_mx():
    assert publish({"mode": "none"}).publish.domains["example.com"].mx == ()
