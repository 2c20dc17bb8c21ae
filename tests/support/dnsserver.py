"""An authoritative test DNS server on loopback (UDP and TCP), driven by a table.

Tests edit the table at run time through ``add`` and ``set``; ``queries`` logs every
question asked. Names not in
the table get NXDOMAIN; existing names without the type get NODATA; both with an SOA
whose MINIMUM is ``negative_ttl``. ``servfail`` and ``drop`` make names fail.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from typing import Dict, List, Set, Tuple

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class TestDns:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.records: Dict[Tuple[str, str], List[str]] = {}
        # How many types each name holds: NXDOMAIN or NODATA without scanning the table
        # (bench/run.py's world holds thousands of names).
        self._types: Dict[str, int] = {}
        self.queries: List[Tuple[str, str]] = []
        self.servfail: Set[str] = set()
        self.drop: Set[str] = set()
        self.ttl = 300
        self.negative_ttl = 300
        self.delay = 0.0  # seconds before each answer: a simulated network (bench/run.py)
        self._lock = threading.Lock()
        handler = self._make_handler()
        for _attempt in range(100 if port == 0 else 1):
            self._udp = _UDPServer((host, port), handler[0])
            self._udp.owner = self
            try:
                # The TCP side takes the same port; a free UDP port may be taken for TCP.
                self._tcp = _TCPServer((host, self._udp.server_address[1]), handler[1])
                break
            except OSError:
                self._udp.server_close()
                if port != 0 or _attempt == 99:
                    raise
        # A burst of first lookups sends four queries per domain at once (TXT, the policy
        # host's A/AAAA, MX): room for them while this Python server starts its threads,
        # as a C resolver would read them in time. SO_RCVBUFFORCE (root) passes rmem_max.
        for option in (getattr(socket, "SO_RCVBUFFORCE", 33), socket.SO_RCVBUF):
            try:
                self._udp.socket.setsockopt(socket.SOL_SOCKET, option, 8 << 20)
                break
            except OSError:
                continue
        self.port = self._udp.server_address[1]
        self.address = f"{host}:{self.port}"
        for srv in (self._udp, self._tcp):
            srv.daemon_threads = True
            threading.Thread(target=srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        for srv in (self._udp, self._tcp):
            srv.shutdown()
            srv.server_close()

    # -- table helpers --------------------------------------------------------------

    def add(self, name: str, rdtype: str, *values: str) -> None:
        with self._lock:
            key = (name.lower().rstrip("."), rdtype)
            if key not in self.records:
                self._types[key[0]] = self._types.get(key[0], 0) + 1
            self.records.setdefault(key, []).extend(values)

    def set(self, name: str, rdtype: str, *values: str) -> None:
        with self._lock:
            key = (name.lower().rstrip("."), rdtype)
            if values:
                if key not in self.records:
                    self._types[key[0]] = self._types.get(key[0], 0) + 1
                self.records[key] = list(values)
            elif self.records.pop(key, None) is not None:
                self._types[key[0]] -= 1
                if not self._types[key[0]]:
                    del self._types[key[0]]

    def count(self, name: str, rdtype: str = "TXT") -> int:
        name = name.lower().rstrip(".")
        return sum(1 for n, t in list(self.queries) if n == name and t == rdtype)

    # -- answering ------------------------------------------------------------------

    def answer(self, wire: bytes):
        query = dns.message.from_wire(wire)
        question = query.question[0]
        qname = question.name.to_text(omit_final_dot=True).lower()
        qtype = dns.rdatatype.to_text(question.rdtype)
        with self._lock:
            self.queries.append((qname, qtype))
            if qname in self.drop:
                return None
            response = dns.message.make_response(query)
            response.flags |= dns.flags.AA
            if qname in self.servfail:
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            name, owner = qname, question.name
            for _ in range(8):  # follow CNAMEs inside our zone
                target = self.records.get((name, "CNAME"))
                if not target or qtype == "CNAME":
                    break
                rrset = dns.rrset.from_text(owner, self.ttl, "IN", "CNAME", target[0])
                response.answer.append(rrset)
                owner = dns.name.from_text(target[0])
                name = owner.to_text(omit_final_dot=True).lower()
            values = self.records.get((name, qtype))
            if values:
                response.answer.append(dns.rrset.from_text_list(owner, self.ttl, "IN", qtype, values))
            elif not response.answer or name != qname:
                if name not in self._types:
                    response.set_rcode(dns.rcode.NXDOMAIN)
                soa = dns.rrset.from_text(
                    "test.",
                    self.negative_ttl,
                    "IN",
                    "SOA",
                    f"ns.test. hostmaster.test. 1 3600 600 86400 {self.negative_ttl}",
                )
                response.authority.append(soa)
        return response

    def _make_handler(self):
        server = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self):
                data, sock = self.request
                response = server.answer(data)
                if server.delay:
                    time.sleep(server.delay)  # in its own thread (_UDPServer): the delays overlap
                if response is not None:
                    sock.sendto(response.to_wire(max_size=65535), self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self):
                while True:
                    head = self.request.recv(2)
                    if len(head) < 2:
                        return
                    (length,) = struct.unpack("!H", head)
                    data = b""
                    while len(data) < length:
                        chunk = self.request.recv(length - len(data))
                        if not chunk:
                            return
                        data += chunk
                    response = server.answer(data)
                    if server.delay:
                        time.sleep(server.delay)
                    if response is None:
                        return
                    wire = response.to_wire()
                    self.request.sendall(struct.pack("!H", len(wire)) + wire)

        return Udp, Tcp


class _UDPServer(socketserver.ThreadingUDPServer):
    owner: TestDns

    def process_request(self, request, client_address):
        if self.owner.delay:  # one thread per query, so that the delays overlap
            super().process_request(request, client_address)
        else:  # a thread per datagram would cost the world more than its answer
            socketserver.BaseServer.process_request(self, request, client_address)


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    address_family = socket.AF_INET
