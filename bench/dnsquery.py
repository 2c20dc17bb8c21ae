"""Client CPU per DNS query, four ways (issue 15's DNS ideas and what came of them), in one run.

    python bench/dnsquery.py [--queries 2000] [--rounds 5]

The test DNS server (tests/support/dnsserver.py) runs in a child process on a loopback port,
so the CPU measured (time.process_time of this process) is the client's alone. Queries go
one at a time; each way runs --rounds times, interleaved, and the best and the median are
printed:

  resolver     dnspython's asyncresolver.Resolver.resolve, as net/dns.py asked before
  bare_udp     dns.asyncquery.udp on a new socket per query, the answer read with
               Message.resolve_chaining (the Resolver's own bookkeeping left out)
  kept_socket  the same over one socket kept open (what a socket pool would save; one
               source port for every query is NOT acceptable as such: a pool needs
               several sockets with random ports and their own demultiplexing)
  exchange     mtasts's DnsClient.txt: core/dnswire messages over a fresh connected UDP
               socket per query (what net/dns.py asks through since issue 15)
No root, no network beyond loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import socket
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
NAMES = 3000
SERVER = f"""
import sys, time
sys.path.insert(0, {str(ROOT)!r})
from tests.support.dnsserver import TestDns
s = TestDns()
for i in range({NAMES}):
    s.set(f"_mta-sts.d{{i}}.example", "TXT", '"v=STSv1; id=1;"')
print(s.port, flush=True)
time.sleep(3600)
"""


async def measure(port: int, queries: int, rounds: int) -> None:
    import dns.asyncbackend
    import dns.asyncquery
    import dns.asyncresolver
    import dns.message
    import dns.nameserver

    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", port)]
    resolver.cache, resolver.lifetime, resolver.timeout = None, 5.0, 2.0
    backend = dns.asyncbackend.get_backend("asyncio")
    kept = await backend.make_socket(socket.AF_INET, socket.SOCK_DGRAM, 0, ("127.0.0.1", 0))

    async def via_resolver(name):
        return (await resolver.resolve(name, "TXT", raise_on_no_answer=False)).rrset

    async def bare_udp(name):
        response = await dns.asyncquery.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", 2, port=port)
        return response.resolve_chaining().answer

    async def kept_socket(name):
        response = await dns.asyncquery.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", 2, port=port, sock=kept)
        return response.resolve_chaining().answer

    sys.path.insert(0, str(ROOT / "src"))
    from mtasts.net.dns import DnsClient, Outcome

    client = DnsClient([("127.0.0.1", port)], 5.0)

    async def exchange(name):
        answer = await client.txt(name)
        return answer.texts if answer.outcome is Outcome.RECORDS else None

    ways = {"resolver": via_resolver, "bare_udp": bare_udp, "kept_socket": kept_socket, "exchange": exchange}
    results = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            start = time.process_time()
            for i in range(queries):
                assert await way(f"_mta-sts.d{i % NAMES}.example") is not None
            results[name].append((time.process_time() - start) / queries * 1e6)
    await kept.close()
    base = min(results["resolver"])
    for name, values in results.items():
        values.sort()
        print(
            f"{name:12} best {values[0]:7.1f} us  median {values[len(values) // 2]:7.1f} us CPU/query"
            f"  ({values[0] / base:.2f}x the resolver's best)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        asyncio.run(measure(port, args.queries, args.rounds))
    finally:
        server.kill()
        server.wait()
        server.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
