"""DNS messages on the wire (RFC 1035 §4): the queries a first lookup sends and their answers.

I/O-free. ``build_query`` makes one question; ``parse_response`` reads a whole response or
raises ``DnsWireError``; ``follow`` walks the answer's CNAME chain to the records asked for.
Names are kept in wire form with ASCII letters lowered (RFC 4343: DNS compares names
case-insensitively, ASCII only), so comparing two names is comparing bytes.

Only what a stub resolver needs is decoded here (header, question, the RRs' owners, types,
TTLs and where their data lie, TXT/A/AAAA data, SOA's MINIMUM); any other record's data is
left to whoever asks for it, at the offsets given.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from mtasts.errors import DnsWireError

# RFC 1035 §2.3.4: labels up to 63 octets, names up to 255 octets on the wire.
MAX_LABEL = 63
MAX_NAME = 255
# Compression pointers must lead ever further back, so a chain of them ends; this bounds the
# work per name besides. Real messages chain two or three; dnspython (2.8+) allows 16 too.
MAX_POINTERS = 16
# CNAMEs followed from the question's name; dnspython's resolve_chaining stops at 16 as well.
MAX_CHAIN = 16
# RFC 6891 §6.2.5 / DNS flag day 2020: a UDP payload that needs no IP fragmentation.
EDNS_PAYLOAD = 1232

CLASS_IN = 1
A, NS, CNAME, SOA, MX, TXT, AAAA, OPT = 1, 2, 5, 6, 15, 16, 28, 41
TYPES = {
    "A": A,
    "NS": NS,
    "CNAME": CNAME,
    "SOA": SOA,
    "MX": MX,
    "TXT": TXT,
    "AAAA": AAAA,
    "TLSA": 52,
    "DS": 43,
    "DNSKEY": 48,
}

# Header flags (RFC 1035 §4.1.1, RFC 4035 §3.2 for AD and CD).
QR, TC, RD, AD = 0x8000, 0x0200, 0x0100, 0x0020
OPCODE_MASK = 0x7800
# RCODEs (RFC 1035 §4.1.1, RFC 6895 §2.3).
NOERROR, FORMERR, SERVFAIL, NXDOMAIN, NOTIMP, REFUSED = 0, 1, 2, 3, 4, 5
RCODE_NAMES = {
    NOERROR: "NOERROR",
    FORMERR: "FORMERR",
    SERVFAIL: "SERVFAIL",
    NXDOMAIN: "NXDOMAIN",
    NOTIMP: "NOTIMP",
    REFUSED: "REFUSED",
}
DO_BIT = 0x8000  # in the OPT record's TTL field (RFC 3225)

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength after the owner name
_QUESTION_FIXED = struct.Struct("!HH")


@dataclass(frozen=True)
class Record:
    """One resource record: its owner (wire form, lowered) and where its data lies."""

    owner: bytes
    rdtype: int
    rdclass: int
    ttl: int
    offset: int  # of the RDATA within the message
    length: int


@dataclass(frozen=True)
class Response:
    wire: bytes
    id: int
    flags: int
    rcode: int  # with the extended bits of an OPT record (RFC 6891 §6.1.3)
    question: Optional[Tuple[bytes, int, int]]  # (name, type, class); None when absent
    answer: Tuple[Record, ...]
    authority: Tuple[Record, ...]

    @property
    def truncated(self) -> bool:
        return bool(self.flags & TC)

    @property
    def authenticated(self) -> bool:
        """The AD bit: the resolver validated the answer (RFC 4035 §3.2.3, RFC 6840 §5.7)."""
        return bool(self.flags & AD)


@dataclass(frozen=True)
class Chain:
    """The answer to one question after its CNAMEs (RFC 1034 §3.6.2)."""

    canonical: bytes  # the name the records belong to
    records: Tuple[Record, ...]  # of the type asked, at ``canonical``; empty for NODATA
    ttl: int  # the smallest TTL of the CNAMEs and the records: how long all of it holds


def encode_name(name: str) -> bytes:
    """*name* (dotted, ASCII, a final dot optional) in wire form, letters lowered."""
    text = name[:-1] if name.endswith(".") else name
    if not text:
        return b"\x00"
    try:
        raw = text.encode("ascii").lower()
    except UnicodeEncodeError:
        raise DnsWireError(f"name {name!r} is not ASCII (IDNA A-labels expected)") from None
    out = bytearray()
    for label in raw.split(b"."):
        if not label:
            raise DnsWireError(f"name {name!r} has an empty label")
        if len(label) > MAX_LABEL:
            raise DnsWireError(f"name {name!r} has a label over {MAX_LABEL} octets")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > MAX_NAME:
        raise DnsWireError(f"name {name!r} is over {MAX_NAME} octets")
    return bytes(out)


def name_text(wire_name: bytes) -> str:
    """A wire-form name as text without the final dot; octets that are no hostname
    characters (and dots inside a label) escaped as \\DDD, as in zone files (RFC 1035 §5.1)."""
    labels = []
    pos = 0
    while wire_name[pos]:
        length = wire_name[pos]
        label = wire_name[pos + 1 : pos + 1 + length]
        labels.append("".join(chr(c) if _PLAIN[c] else "\\%03d" % c for c in label))
        pos += 1 + length
    return ".".join(labels)


_PLAIN = [(chr(c).isalnum() and c < 128) or chr(c) in "-_*" for c in range(256)]


def build_query(qid: int, qname: bytes, rdtype: int, dnssec: bool = False) -> bytes:
    """A recursive query (RD) for (*qname*, *rdtype*, IN); *qname* in wire form (``encode_name``,
    done once per question: the same name is matched against every reply).

    *dnssec*: EDNS0 with the DO bit and AD set, so a validating resolver says in the AD bit
    whether it validated the answer (RFC 6840 §5.7); plain queries carry no EDNS, as before.
    """
    flags = RD | (AD if dnssec else 0)
    header = _HEADER.pack(qid, flags, 1, 0, 0, 1 if dnssec else 0)
    question = qname + _QUESTION_FIXED.pack(rdtype, CLASS_IN)
    if not dnssec:
        return header + question
    # OPT RR (RFC 6891 §6.1.2): root owner, class = payload size, TTL = ext-rcode/version/flags.
    opt = b"\x00" + _RR_FIXED.pack(OPT, EDNS_PAYLOAD, DO_BIT, 0)
    return header + question + opt


def read_name(wire: bytes, pos: int, known: Optional[Dict[int, Tuple[bytes, int]]] = None) -> Tuple[bytes, int]:
    """The name at *pos* (compression followed, letters lowered) and the offset after it.

    *known*: the names already read from this message by where they start (with the pointers
    they took); a pointer to one of those takes it whole and every name read adds its own, so
    reading a message costs about one step per octet of it, however its pointers chain."""
    out = bytearray()
    end = -1
    pointers = 0
    size = len(wire)
    start = pos  # where the labels being read began: a pointer must lead before it
    starts = [(pos, 0, 0)]  # (offset, len(out), pointers there): names that end where this one ends
    while True:
        if pos >= size:
            raise DnsWireError("name runs past the end of the message")
        length = wire[pos]
        if length == 0:
            out.append(0)
            if end < 0:
                end = pos + 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= size:
                raise DnsWireError("compression pointer cut off")
            target = ((length & 0x3F) << 8) | wire[pos + 1]
            # RFC 1035 §4.1.4: a pointer to a *prior* occurrence. Each pointer must lead
            # before the labels read since the last one, so the walk cannot come back (a
            # pointer to its own name's first label would loop).
            if target >= start:
                raise DnsWireError("compression pointer does not point backwards")
            start = target
            pointers += 1
            if pointers > MAX_POINTERS:
                raise DnsWireError("too many compression pointers")
            if end < 0:
                end = pos + 2
            pos = target
            seen = known.get(target) if known is not None else None
            if seen is not None:
                suffix, more = seen
                if len(out) + len(suffix) > MAX_NAME:
                    raise DnsWireError(f"name over {MAX_NAME} octets")
                if pointers + more > MAX_POINTERS:
                    raise DnsWireError("too many compression pointers")
                out += suffix
                pointers += more
                break
            starts.append((pos, len(out), pointers))
            continue
        if kind:
            raise DnsWireError(f"unknown label type 0x{kind:02x}")  # RFC 6891 §5: obsolete
        if pos + 1 + length > size:
            raise DnsWireError("label runs past the end of the message")
        out.append(length)
        out += wire[pos + 1 : pos + 1 + length].lower()
        if len(out) + 1 > MAX_NAME:
            raise DnsWireError(f"name over {MAX_NAME} octets")
        pos += 1 + length
    name = bytes(out)
    if known is not None:
        for offset, at, before in starts:
            known.setdefault(offset, (name[at:], pointers - before))
    return name, end


def _records(wire: bytes, pos: int, count: int, known: Dict[int, Tuple[bytes, int]]) -> Tuple[List[Record], int]:
    records = []
    size = len(wire)
    for _ in range(count):
        owner, pos = read_name(wire, pos, known)
        if pos + 10 > size:
            raise DnsWireError("resource record header cut off")
        rdtype, rdclass, ttl, length = _RR_FIXED.unpack_from(wire, pos)
        pos += 10
        if pos + length > size:
            raise DnsWireError("resource record data runs past the end of the message")
        # RFC 2181 §8: a TTL with the top bit set is to be read as zero.
        records.append(Record(owner, rdtype, rdclass, ttl if ttl < 0x80000000 else 0, pos, length))
        pos += length
    return records, pos


def parse_response(wire: bytes) -> Response:
    """Read a whole DNS response; ``DnsWireError`` if it is not one."""
    if len(wire) < _HEADER.size:
        raise DnsWireError(f"message of {len(wire)} octets is shorter than a header")
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(wire, 0)
    if not flags & QR:
        raise DnsWireError("not a response (QR clear)")
    if qdcount > 1:
        raise DnsWireError(f"{qdcount} questions in a response")
    pos = _HEADER.size
    question = None
    known: Dict[int, Tuple[bytes, int]] = {}
    if qdcount:
        qname, pos = read_name(wire, pos, known)
        if pos + 4 > len(wire):
            raise DnsWireError("question cut off")
        qtype, qclass = _QUESTION_FIXED.unpack_from(wire, pos)
        pos += 4
        question = (qname, qtype, qclass)
    answer, pos = _records(wire, pos, ancount, known)
    authority, pos = _records(wire, pos, nscount, known)
    additional, pos = _records(wire, pos, arcount, known)
    rcode = flags & 0x000F
    for record in additional:
        if record.rdtype == OPT:
            # RFC 6891 §6.1.3: the upper 8 bits of the 12-bit RCODE ride in the OPT TTL;
            # _records zeroed a TTL with the top bit set, so read it from the wire again.
            raw_ttl = struct.unpack_from("!I", wire, record.offset - 6)[0]
            rcode |= (raw_ttl >> 24) << 4
    return Response(wire, qid, flags, rcode, question, tuple(answer), tuple(authority))


def may_answer(wire: bytes, qid: int, qname: bytes, rdtype: int) -> bool:
    """Whether datagram *wire* can be the answer to our query, from its first octets alone:
    our id, a response, one question that is ours as we wrote it (servers echo the question
    uncompressed, RFC 1035 §4.1.2; case aside). Anything else is dropped before it is parsed,
    so a flood of stray or forged datagrams costs a comparison each."""
    end = _HEADER.size + len(qname) + 4
    if len(wire) < end or wire[0] != qid >> 8 or wire[1] != qid & 0xFF or not wire[2] & 0x80:
        return False
    if wire[4:6] != b"\x00\x01":
        return False
    return wire[12 : end - 4].lower() == qname and wire[end - 4 : end] == _QUESTION_FIXED.pack(rdtype, CLASS_IN)


def answers_question(response: Response, qid: int, qname: bytes, rdtype: int) -> bool:
    """Whether *response* answers our query (id, opcode QUERY, the same question): anything
    else on the socket is stray or forged and is ignored (RFC 5452 §9.1)."""
    return response.id == qid and not response.flags & OPCODE_MASK and response.question == (qname, rdtype, CLASS_IN)


def follow(response: Response, qname: bytes, rdtype: int) -> Chain:
    """The records of *rdtype* for *qname*, through the CNAMEs in the answer section."""
    name = qname
    ttl = None
    for _ in range(MAX_CHAIN + 1):
        found = tuple(r for r in response.answer if r.owner == name and r.rdtype == rdtype and r.rdclass == CLASS_IN)
        if found:
            least = min(r.ttl for r in found)
            return Chain(name, found, least if ttl is None else min(ttl, least))
        if rdtype == CNAME:
            break
        alias = next(
            (r for r in response.answer if r.owner == name and r.rdtype == CNAME and r.rdclass == CLASS_IN), None
        )
        if alias is None:
            break
        target, _end = read_name(response.wire, alias.offset)
        ttl = alias.ttl if ttl is None else min(ttl, alias.ttl)
        name = target
    else:
        raise DnsWireError(f"CNAME chain longer than {MAX_CHAIN}")
    return Chain(name, (), 0 if ttl is None else ttl)


def negative_ttl(response: Response) -> Optional[int]:
    """RFC 2308 §5: how long a denial holds, min(SOA TTL, SOA MINIMUM); None without an SOA."""
    for record in response.authority:
        if record.rdtype == SOA and record.length >= 20:
            # MINIMUM is the last of the five 32-bit fields closing the SOA data.
            minimum = struct.unpack_from("!I", response.wire, record.offset + record.length - 4)[0]
            return min(record.ttl, minimum)
    return None


def txt_data(response: Response, record: Record) -> bytes:
    """A TXT record's character-strings joined (RFC 8461 §3.1 reads them as one)."""
    wire = response.wire
    pos, end = record.offset, record.offset + record.length
    parts = []
    while pos < end:
        length = wire[pos]
        if pos + 1 + length > end:
            raise DnsWireError("TXT string runs past its record")
        parts.append(wire[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return b"".join(parts)


def address(response: Response, record: Record) -> str:
    """An A or AAAA record's address as text."""
    data = response.wire[record.offset : record.offset + record.length]
    if record.rdtype == A and record.length == 4:
        return "%d.%d.%d.%d" % tuple(data)
    if record.rdtype == AAAA and record.length == 16:
        return ipaddress.IPv6Address(data).compressed
    raise DnsWireError(f"type {record.rdtype} record of {record.length} octets is no address")
