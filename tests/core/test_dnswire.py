"""core/dnswire against dnspython as the oracle: the queries it builds, the responses it reads,
CNAME chains and denials; any bytes either parse or raise DnsWireError."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtasts.core import dnswire
from mtasts.errors import DnsWireError

LABEL = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
NAME = st.lists(LABEL, min_size=1, max_size=5).map(".".join)


def response_to(name, rdtype, *sections, rcode=0, flags=0, soa_ttl=None, qid=4242):
    query = dns.message.make_query(name, rdtype)
    query.id = qid
    response = dns.message.make_response(query)
    response.flags |= flags
    response.set_rcode(rcode)
    for rrset in sections:
        response.answer.append(rrset)
    if soa_ttl is not None:
        ttl, minimum = soa_ttl
        response.authority.append(
            dns.rrset.from_text("example.", ttl, "IN", "SOA", f"ns.example. host.example. 1 3600 600 86400 {minimum}")
        )
    return response.to_wire()


def wire_name(name):
    return dnswire.encode_name(name)


# -- queries ----------------------------------------------------------------------


@given(NAME, st.sampled_from(["TXT", "A", "AAAA", "MX", "TLSA"]), st.integers(0, 0xFFFF), st.booleans())
def test_queries_read_back_as_what_was_asked(name, rdtype, qid, dnssec):
    query = dns.message.from_wire(dnswire.build_query(qid, wire_name(name), dnswire.TYPES[rdtype], dnssec))
    assert query.id == qid and query.flags & dns.flags.RD and not query.flags & dns.flags.QR
    assert query.question[0].name == dns.name.from_text(name)
    assert query.question[0].rdtype == dns.rdatatype.from_text(rdtype)
    if dnssec:
        # RFC 6840 §5.7 and RFC 3225: AD and DO ask a validating resolver to say it validated.
        assert query.flags & dns.flags.AD and query.ednsflags & dns.flags.DO
        assert query.edns == 0 and query.payload == dnswire.EDNS_PAYLOAD
    else:
        assert query.edns == -1 and not query.flags & dns.flags.AD


def test_query_bytes_are_exactly_the_rfc_1035_layout():
    wire = dnswire.build_query(0x1234, wire_name("Example.COM."), dnswire.TXT)
    assert wire == (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x10\x00\x01")


@pytest.mark.parametrize(
    "name, why",
    [
        ("a..b", "empty label"),
        ("x" * 64 + ".example", "label over 63"),
        (".".join(["abcdefghi"] * 26), "over 255"),
        ("bücher.example", "not ASCII"),
    ],
)
def test_names_no_query_can_carry_are_refused(name, why):
    with pytest.raises(DnsWireError, match=why.split()[-1]):
        dnswire.encode_name(name)


def test_the_longest_name_fits_and_the_root_is_one_octet():
    longest = ".".join(["a" * 63] * 3 + ["b" * 61])  # 4 labels: 64 * 3 + 62 + 1 = 255 octets
    assert len(dnswire.encode_name(longest)) == 255
    assert dnswire.encode_name(".") == b"\x00" == dnswire.encode_name("")


# -- responses, against dnspython -------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    qname=NAME,
    chain=st.lists(NAME, max_size=4, unique=True),
    texts=st.lists(st.lists(st.binary(max_size=300), min_size=1, max_size=3), max_size=3),
    ttls=st.lists(st.integers(0, 2**31 - 1), min_size=6, max_size=6),
)
def test_txt_answers_through_cname_chains_read_as_dnspython_reads_them(qname, chain, texts, ttls):
    names = [qname] + [c for c in chain if c != qname]
    rrsets = [
        dns.rrset.from_text(a + ".", ttls[i], "IN", "CNAME", b + ".") for i, (a, b) in enumerate(zip(names, names[1:]))
    ]
    if texts:
        rdata = [" ".join('"%s"' % "".join("\\%03d" % c for c in s) for s in strings) for strings in texts]
        rrsets.append(dns.rrset.from_text_list(names[-1] + ".", ttls[5], "IN", "TXT", rdata))
    wire = response_to(qname, "TXT", *rrsets)
    ours = dnswire.parse_response(wire)
    chain_ = dnswire.follow(ours, wire_name(qname), dnswire.TXT)
    theirs = dns.message.from_wire(wire).resolve_chaining()
    assert dnswire.name_text(chain_.canonical) == theirs.canonical_name.to_text(omit_final_dot=True)
    if theirs.answer is None:
        assert chain_.records == ()
    else:
        assert sorted(dnswire.txt_data(ours, r) for r in chain_.records) == sorted(
            b"".join(r.strings) for r in theirs.answer
        )
        assert chain_.ttl == theirs.minimum_ttl


@settings(max_examples=60, deadline=None)
@given(
    qname=NAME,
    v4=st.lists(st.ip_addresses(v=4), max_size=4, unique=True),
    v6=st.lists(st.ip_addresses(v=6), max_size=4, unique=True),
)
def test_addresses_read_as_dnspython_reads_them(qname, v4, v6):
    for rdtype, addresses in (("A", v4), ("AAAA", v6)):
        rrsets = (
            [dns.rrset.from_text_list(qname + ".", 60, "IN", rdtype, [str(a) for a in addresses])] if addresses else []
        )
        wire = response_to(qname, rdtype, *rrsets)
        ours = dnswire.parse_response(wire)
        chain = dnswire.follow(ours, wire_name(qname), dnswire.TYPES[rdtype])
        assert sorted(dnswire.address(ours, r) for r in chain.records) == sorted(str(a) for a in addresses)


def test_denials_carry_the_rfc_2308_ttl_and_the_rcode():
    wire = response_to("nx.example", "TXT", rcode=dns.rcode.NXDOMAIN, soa_ttl=(3600, 300))
    response = dnswire.parse_response(wire)
    assert response.rcode == dnswire.NXDOMAIN and dnswire.negative_ttl(response) == 300
    wire = response_to("nodata.example", "TXT", soa_ttl=(120, 900))
    response = dnswire.parse_response(wire)
    assert response.rcode == dnswire.NOERROR and dnswire.negative_ttl(response) == 120
    assert dnswire.follow(response, wire_name("nodata.example"), dnswire.TXT).records == ()
    assert dnswire.negative_ttl(dnswire.parse_response(response_to("x.example", "TXT"))) is None


def test_names_compare_without_case_and_the_ad_bit_is_read():
    wire = response_to(
        "MiXeD.Example", "A", dns.rrset.from_text("mixed.EXAMPLE.", 60, "IN", "A", "192.0.2.1"), flags=dns.flags.AD
    )
    response = dnswire.parse_response(wire)
    assert response.authenticated
    assert dnswire.answers_question(response, 4242, wire_name("mixed.example"), dnswire.A)
    assert [
        dnswire.address(response, r) for r in dnswire.follow(response, wire_name("mixed.example"), dnswire.A).records
    ] == ["192.0.2.1"]


def test_only_the_answer_to_our_question_is_taken():
    wire = response_to("a.example", "TXT")
    response = dnswire.parse_response(wire)
    assert dnswire.answers_question(response, 4242, wire_name("a.example"), dnswire.TXT)
    assert not dnswire.answers_question(response, 4243, wire_name("a.example"), dnswire.TXT)  # another id
    assert not dnswire.answers_question(response, 4242, wire_name("b.example"), dnswire.TXT)  # another name
    assert not dnswire.answers_question(response, 4242, wire_name("a.example"), dnswire.A)  # another type
    notify = bytearray(wire)
    notify[2] |= 0x20  # opcode 4 (NOTIFY)
    assert not dnswire.answers_question(
        dnswire.parse_response(bytes(notify)), 4242, wire_name("a.example"), dnswire.TXT
    )


def test_extended_rcode_from_the_opt_record():
    query = dns.message.make_query("a.example", "TXT", use_edns=0)
    response = dns.message.make_response(query)
    response.set_rcode(dns.rcode.BADVERS)  # 16: 1 in the OPT TTL's top byte, 0 in the header
    assert dnswire.parse_response(response.to_wire()).rcode == 16


def test_a_ttl_with_the_top_bit_set_reads_as_zero():
    wire = bytearray(response_to("a.example", "A", dns.rrset.from_text("a.example.", 60, "IN", "A", "192.0.2.1")))
    ttl_at = len(wire) - 4 - 2 - 4  # rdata, rdlength, then the TTL
    struct.pack_into("!I", wire, ttl_at, 0x80000001)
    response = dnswire.parse_response(bytes(wire))
    assert response.answer[0].ttl == 0  # RFC 2181 §8


def test_a_cname_loop_ends_in_an_error():
    wire = response_to(
        "a.example",
        "TXT",
        dns.rrset.from_text("a.example.", 60, "IN", "CNAME", "b.example."),
        dns.rrset.from_text("b.example.", 60, "IN", "CNAME", "a.example."),
    )
    with pytest.raises(DnsWireError, match="CNAME chain"):
        dnswire.follow(dnswire.parse_response(wire), wire_name("a.example"), dnswire.TXT)


def test_mx_data_is_left_where_dnspython_can_read_it():
    import dns.rdata

    wire = response_to("a.example", "MX", dns.rrset.from_text("a.example.", 60, "IN", "MX", "10 mx.a.example."))
    response = dnswire.parse_response(wire)
    (record,) = dnswire.follow(response, wire_name("a.example"), dnswire.MX).records
    mx = dns.rdata.from_wire(record.rdclass, record.rdtype, response.wire, record.offset, record.length)
    assert (mx.preference, mx.exchange.to_text()) == (10, "mx.a.example.")


# -- hostile bytes ----------------------------------------------------------------------


def _header(qd=1, an=0, ns=0, ar=0, flags=0x8180):
    return struct.pack("!HHHHHH", 1, flags, qd, an, ns, ar)


@pytest.mark.parametrize(
    "body, why",
    [
        (b"\x01a\xc0\x0c\x00\x10\x00\x01", "backwards"),  # a pointer to itself
        (b"\xc0\x20\x00\x10\x00\x01", "backwards"),  # a pointer forward
        (b"\x40abc\x00\x00\x10\x00\x01", "label type"),  # extended label type (RFC 6891 §5)
        (b"\x05ab", "past the end"),
    ],
)
def test_names_that_would_loop_or_overrun_are_refused(body, why):
    with pytest.raises(DnsWireError, match=why):
        dnswire.parse_response(_header() + body)


def test_a_query_is_not_a_response():
    with pytest.raises(DnsWireError, match="QR"):
        dnswire.parse_response(dnswire.build_query(1, wire_name("a.example"), dnswire.TXT))


def test_every_prefix_of_a_response_is_refused_whole():
    wire = response_to(
        "a.example", "TXT", dns.rrset.from_text("a.example.", 60, "IN", "TXT", '"v=STSv1; id=1;"'), soa_ttl=(60, 60)
    )
    assert dnswire.parse_response(wire).answer
    for cut in range(len(wire)):
        with pytest.raises(DnsWireError):
            dnswire.parse_response(wire[:cut])


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_any_bytes_parse_or_raise_dns_wire_error(data):
    try:
        response = dnswire.parse_response(data)
    except DnsWireError:
        return
    for record in response.answer:
        for read in (dnswire.txt_data, dnswire.address):
            try:
                read(response, record)
            except DnsWireError:
                pass
    try:
        dnswire.follow(response, b"\x01a\x00", dnswire.TXT)
    except DnsWireError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_responses_parse_or_raise_dns_wire_error(data):
    wire = bytearray(
        response_to(
            "a.example",
            "TXT",
            dns.rrset.from_text("a.example.", 60, "IN", "CNAME", "b.a.example."),
            dns.rrset.from_text("b.a.example.", 60, "IN", "TXT", '"v=STSv1; id=1;"', '"x" "y"'),
            soa_ttl=(60, 60),
        )
    )
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    try:
        response = dnswire.parse_response(bytes(wire))
        chain = dnswire.follow(response, wire_name("a.example"), dnswire.TXT)
        for record in chain.records:
            dnswire.txt_data(response, record)
    except DnsWireError:
        pass


def _pointer_chain_message(records: int = 400, depth: int = 120) -> bytes:
    """An answer whose owner names chain up to *depth* compression pointers each, valid A
    records all: what made a 64 KiB message cost 371 ms to read (issue 24, 8)."""
    question = b"\x01a\x07example\x00" + struct.pack("!HH", dnswire.A, 1)
    body, prev = bytearray(), 12
    for count in range(records):
        at = 12 + len(question) + len(body)
        owner = (b"\x01x" if count < depth else b"") + struct.pack("!H", 0xC000 | prev)
        if count < depth:
            prev = at
        body += owner + struct.pack("!HHIH", dnswire.A, 1, 300, 4) + bytes([10, count >> 8, count & 255, 1])
    return struct.pack("!HHHHHH", 4242, 0x8180, 1, records, 0, 0) + question + bytes(body)


@pytest.mark.parametrize("depth", [3, dnswire.MAX_POINTERS - 1, dnswire.MAX_POINTERS, 120])
def test_names_chained_through_pointers_read_as_dnspython_reads_them(depth):
    # The last records' owners point at the deepest name: depth + 1 pointers in all.
    wire = _pointer_chain_message(depth=depth)
    if depth + 1 > dnswire.MAX_POINTERS:
        with pytest.raises(DnsWireError, match="too many compression pointers"):
            dnswire.parse_response(wire)
        return
    ours = dnswire.parse_response(wire)
    theirs = dns.message.from_wire(wire)
    expected = [rrset.name.to_text(omit_final_dot=True).lower() for rrset in theirs.answer for _ in rrset]
    got = sorted(dnswire.name_text(r.owner) for r in ours.answer)
    assert got == sorted(expected) and len(got) == 400


def test_may_answer_drops_what_is_not_ours_before_it_is_parsed():
    name = wire_name("a.example")
    wire = dns.message.make_response(dns.message.make_query("A.Example", "TXT", id=4242)).to_wire()
    assert dnswire.may_answer(wire, 4242, name, dnswire.TXT)  # the question echoed in its own case
    assert not dnswire.may_answer(wire, 4243, name, dnswire.TXT)
    assert not dnswire.may_answer(wire, 4242, wire_name("b.example"), dnswire.TXT)
    assert not dnswire.may_answer(wire, 4242, name, dnswire.A)
    query = dnswire.build_query(4242, name, dnswire.TXT)
    assert not dnswire.may_answer(query, 4242, name, dnswire.TXT)  # QR clear: no response
    assert not dnswire.may_answer(wire[:20], 4242, name, dnswire.TXT)


@settings(max_examples=300)
@given(st.binary(max_size=200), st.integers(0, 0xFFFF))
def test_may_answer_never_drops_an_answer_to_the_question(noise, qid):
    name = wire_name("a.example")
    wire = bytearray(dns.message.make_response(dns.message.make_query("a.example", "TXT", id=qid)).to_wire())
    for at in range(0, len(noise), 2):  # damage anything but the header's first octets and the question
        position = 20 + (noise[at] % max(1, len(wire) - 20))
        if position >= 12 + len(name) + 4 and at + 1 < len(noise):
            wire[position] = noise[at + 1]
    try:
        response = dnswire.parse_response(bytes(wire))
    except DnsWireError:
        return
    if dnswire.answers_question(response, qid, name, dnswire.TXT):
        assert dnswire.may_answer(bytes(wire), qid, name, dnswire.TXT)
