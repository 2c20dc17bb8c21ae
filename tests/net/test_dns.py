"""net/dns's exchange with real sockets on loopback: nameservers that forge, garble, truncate,
fail, stay silent or are not there. No root: the servers listen on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from mtasts.net.dns import DnsClient, Outcome

TXT = '"v=STSv1; id=20261130;"'


def answer(query: dns.message.Message, rcode=dns.rcode.NOERROR, tc=False, ad=False) -> dns.message.Message:
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    if tc:
        response.flags |= dns.flags.TC
    if ad:
        response.flags |= dns.flags.AD
    q = query.question[0]
    if rcode == dns.rcode.NOERROR and not tc and q.rdtype == dns.rdatatype.TXT:
        response.answer.append(dns.rrset.from_text(q.name, 300, "IN", "TXT", TXT))
    if rcode == dns.rcode.NOERROR and not tc and q.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(q.name, 300, "IN", "A", "192.0.2.7"))
    return response


class ScriptedDns:
    """A UDP+TCP nameserver whose every UDP reply is what ``script(query)`` returns: a list
    of datagrams to send back (possibly none). TCP always answers properly."""

    def __init__(self, script, tcp_stall=False):
        self.script = script
        self.tcp_stall = tcp_stall  # accept TCP connections, read the query, never answer
        for _attempt in range(100):  # a free UDP port may be taken for TCP: try another
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket()
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(8)
        self.sources = []
        self.tcp_queries = 0
        self._stop = False
        for target in (self._serve_udp, self._serve_tcp):
            threading.Thread(target=target, daemon=True).start()

    @property
    def nameserver(self):
        return ("127.0.0.1", self.port)

    def _serve_udp(self):
        while not self._stop:
            try:
                data, peer = self.udp.recvfrom(65535)
            except OSError:
                return
            self.sources.append(peer[1])
            for datagram in self.script(dns.message.from_wire(data)):
                self.udp.sendto(datagram, peer)

    def _serve_tcp(self):
        while not self._stop:
            try:
                conn, _ = self.tcp.accept()
            except OSError:
                return
            with conn:
                (length,) = struct.unpack("!H", conn.recv(2))
                data = b""
                while len(data) < length:
                    data += conn.recv(length - len(data))
                self.tcp_queries += 1
                if self.tcp_stall:
                    time.sleep(10)
                    continue
                wire = answer(dns.message.from_wire(data)).to_wire()
                conn.sendall(struct.pack("!H", len(wire)) + wire)

    def close(self):
        self._stop = True
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def scripted():
    servers = []

    def make(script, **options):
        server = ScriptedDns(script, **options)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def txt(nameservers, name="_mta-sts.example.com", timeout=3.0):
    return asyncio.run(DnsClient(nameservers, timeout).txt(name))


def test_a_plain_answer(scripted):
    server = scripted(lambda q: [answer(q).to_wire()])
    got = txt([server.nameserver])
    assert got.outcome is Outcome.RECORDS and got.texts == (b"v=STSv1; id=20261130;",) and got.ttl == 300


def test_forged_and_garbled_datagrams_are_ignored_and_the_real_answer_taken(scripted):
    def script(q):
        forged = answer(q)
        forged.id = (q.id + 1) & 0xFFFF  # RFC 5452: a reply to another id is no reply
        forged.answer[0] = dns.rrset.from_text(q.question[0].name, 300, "IN", "TXT", '"v=STSv1; id=forged;"')
        other = answer(dns.message.make_query("_mta-sts.evil.example", "TXT", id=q.id))  # another question
        return [b"\x00garbage", forged.to_wire(), other.to_wire(), answer(q).to_wire()]

    got = txt([scripted(script).nameserver])
    assert got.outcome is Outcome.RECORDS and got.texts == (b"v=STSv1; id=20261130;",)


def test_a_truncated_answer_is_asked_again_over_tcp(scripted):
    server = scripted(lambda q: [answer(q, tc=True).to_wire()])
    got = txt([server.nameserver])
    assert got.outcome is Outcome.RECORDS and server.tcp_queries == 1


def test_a_truncated_answer_whose_tcp_retry_stalls_leaves_time_for_the_next_server(scripted):
    # Issue 24, 8: the TCP retry took the whole lifetime, and the healthy second server was
    # never asked (a 5 s TIMEOUT where dnspython answers in 2 s).
    stalling = scripted(lambda q: [answer(q, tc=True).to_wire()], tcp_stall=True)
    good = scripted(lambda q: [answer(q).to_wire()])
    got = txt([stalling.nameserver, good.nameserver], timeout=4.0)
    # Answered at all: the stalled TCP retry had one try's time (2 s), and the rest was left.
    assert got.outcome is Outcome.RECORDS and stalling.tcp_queries == 1 and len(good.sources) == 1


def test_a_failing_server_is_left_for_the_next(scripted):
    failing = scripted(lambda q: [answer(q, rcode=dns.rcode.SERVFAIL).to_wire()])
    refusing = scripted(lambda q: [answer(q, rcode=dns.rcode.REFUSED).to_wire()])
    good = scripted(lambda q: [answer(q).to_wire()])
    got = txt([failing.nameserver, refusing.nameserver, good.nameserver])
    assert got.outcome is Outcome.RECORDS
    assert len(failing.sources) == len(refusing.sources) == 1


def test_all_servers_failing_is_a_temporary_servfail_that_names_them(scripted):
    failing = scripted(lambda q: [answer(q, rcode=dns.rcode.SERVFAIL).to_wire()])
    got = txt([failing.nameserver])
    assert got.outcome is Outcome.SERVFAIL and got.temporary
    assert f"Do53:127.0.0.1@{failing.port} answered SERVFAIL" in got.detail


def test_a_silent_server_is_skipped_after_its_try_and_asked_again_while_time_lasts(scripted):
    silent = scripted(lambda q: [])
    good = scripted(lambda q: [answer(q).to_wire()])
    started = time.monotonic()
    got = asyncio.run(DnsClient([silent.nameserver, good.nameserver], 0.6).txt("_mta-sts.example.com"))
    assert got.outcome is Outcome.RECORDS
    # The lifetime is shared: one try of the silent server (0.3 s), then the good one.
    assert 0.25 < time.monotonic() - started < 0.6


def test_silence_everywhere_is_a_timeout_within_the_lifetime(scripted):
    silent = scripted(lambda q: [])
    started = time.monotonic()
    got = asyncio.run(DnsClient([silent.nameserver], 0.5).txt("_mta-sts.example.com"))
    assert got.outcome is Outcome.TIMEOUT and "within 0.5 s" in got.detail
    assert time.monotonic() - started < 1.5


def test_nobody_listening_fails_at_once():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    got = txt([("127.0.0.1", port)], timeout=5.0)
    # The ICMP port unreachable reaches the connected socket: no waiting for a timeout.
    assert got.outcome is Outcome.SERVFAIL and time.monotonic() - started < 1.0


def test_every_query_comes_from_its_own_socket(scripted):
    server = scripted(lambda q: [answer(q).to_wire()])

    async def many():
        client = DnsClient([server.nameserver], 3.0)
        for i in range(20):
            assert (await client.txt(f"_mta-sts.d{i}.example")).outcome is Outcome.RECORDS

    asyncio.run(many())
    # RFC 5452 §9.2: the source port is as unpredictable as the kernel makes it, per query.
    assert len(set(server.sources)) >= 18


def test_the_secure_query_carries_do_and_ad_and_reads_the_ad_bit(scripted):
    seen = []

    def script(q):
        seen.append(q)
        return [answer(q, ad=True).to_wire()]

    server = scripted(script)
    got = asyncio.run(DnsClient([server.nameserver], 3.0).secure("mx.example.com", "A"))
    assert got.outcome is Outcome.RECORDS and got.validated and got.name == "mx.example.com"
    assert [r.address for r in got.records] == ["192.0.2.7"]
    assert seen[0].ednsflags & dns.flags.DO and seen[0].flags & dns.flags.AD


def test_addresses_of_a_host_without_any_raise_oserror(scripted):
    server = scripted(lambda q: [answer(q).to_wire()])  # A records only, AAAA NODATA
    client = DnsClient([server.nameserver], 3.0)
    assert asyncio.run(client.addresses("mta-sts.example.com")) == [(socket.AF_INET, "192.0.2.7")]
    with pytest.raises(OSError, match="no A or AAAA record"):
        asyncio.run(client.addresses("mta-sts.example.com", socket.AF_INET6))


@pytest.mark.parametrize("silent", ["AAAA", "A"])
def test_a_family_that_never_answers_costs_the_resolution_delay_not_the_timeout(scripted, silent):
    from mtasts.net.dns import RESOLUTION_DELAY

    def script(q):
        rdtype = dns.rdatatype.to_text(q.question[0].rdtype)
        if rdtype == silent:
            return []  # a resolver (or middlebox) that drops this type
        response = answer(q)
        if rdtype == "AAAA":
            response.answer.append(dns.rrset.from_text(q.question[0].name, 300, "IN", "AAAA", "2001:db8::7"))
        return [response.to_wire()]

    server = scripted(script)
    started = time.monotonic()
    got = asyncio.run(DnsClient([server.nameserver], 3.0).addresses("mta-sts.example.com"))
    took = time.monotonic() - started
    assert got == ([(socket.AF_INET6, "2001:db8::7")] if silent == "A" else [(socket.AF_INET, "192.0.2.7")])
    assert RESOLUTION_DELAY <= took < 1.0, took  # RFC 8305 §3; the lifetime is 3 s


def test_both_families_are_waited_for_while_neither_has_addresses(scripted):
    def script(q):
        if q.question[0].rdtype == dns.rdatatype.AAAA:
            return []
        response = answer(q)
        response.answer.clear()  # A: NODATA
        return [response.to_wire()]

    server = scripted(script)
    started = time.monotonic()
    with pytest.raises(OSError, match=r"AAAA: no answer"):
        asyncio.run(DnsClient([server.nameserver], 0.6).addresses("mta-sts.example.com"))
    assert time.monotonic() - started >= 0.5  # the AAAA query had its whole lifetime


def test_a_name_no_query_can_carry_is_a_servfail_not_a_crash(scripted):
    server = scripted(lambda q: [answer(q).to_wire()])
    got = txt([server.nameserver], name="_mta-sts." + "x" * 64 + ".example")
    assert got.outcome is Outcome.SERVFAIL and "63" in got.detail and server.sources == []


def test_a_nameserver_that_is_no_address_is_a_config_error_naming_it():
    from mtasts.errors import ConfigError
    from mtasts.net.dns import _Server

    with pytest.raises(ConfigError, match=r"\[resolver\] nameservers .*'dns\.example' is not an IP address"):
        _Server.of("dns.example", 53)
    assert _Server.of("::1", 5353).sockaddr[:2] == ("::1", 5353)
