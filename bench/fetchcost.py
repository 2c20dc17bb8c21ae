"""Client CPU per policy fetch: mtasts's fetcher against aiohttp and bare asyncio TLS streams.

    python bench/fetchcost.py [--fetches 600] [--rounds 5] [--concurrency 64]   # as root (ports 53, 443)

The world of bench/run.py (test DNS server and HTTPS policy host, trustme certificates) runs
in a child process, so the CPU measured (time.process_time of this process) is the client's
alone. Each way fetches its own fresh domains (no connection reuse, as for first lookups);
the ways take turns, ``--rounds`` rounds of ``fetches / rounds`` each, and the median round
is reported (this machine's CPU figures drift by tens of percent within a minute, so ways
measured one after the other are not comparable):

  fetcher   PolicyFetcher.fetch, as a first lookup fetches (its own A/AAAA queries, ~0.2 ms)
  aiohttp   an aiohttp ClientSession with the same SSL context and A/AAAA through the same
            DnsClient: how net/fetch.py fetched until 2026-11-30
  streams   asyncio.open_connection(ssl=...), one HTTP/1.1 GET written by hand, read to EOF
            (no status, header or size checks), with the same A/AAAA
  blocking  the same GET over a blocking socket and ssl.SSLSocket, one fetch after the other,
            no DNS (the address of the first answer): the floor without asyncio, i.e. the TLS
            handshake itself; compare with the others less their A/AAAA queries
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))


async def measure(ca_file: str, fresh: list, n: int, rounds: int, concurrency: int) -> None:
    import aiohttp
    import run

    from mtasts.core.policy import parse_policy
    from mtasts.net.dns import DnsClient
    from mtasts.net.fetch import POLICY_PATH, PolicyFetcher, make_ssl_context, policy_host, policy_url

    client = DnsClient([(run.DNS_IP, 53)], 5.0)
    fetcher = PolicyFetcher(client, 10.0, ca_file)
    await fetcher.start()
    context = make_ssl_context(ca_file)
    slots = asyncio.Semaphore(concurrency)
    request = "GET " + POLICY_PATH + " HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n"

    class Resolver(aiohttp.abc.AbstractResolver):
        async def resolve(self, host, port=0, family=socket.AF_INET):
            return [
                {"hostname": host, "host": a, "port": port, "family": f, "proto": 0, "flags": socket.AI_NUMERICHOST}
                for f, a in await client.addresses(host)
            ]

        async def close(self):
            pass

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            resolver=Resolver(), ssl=context, use_dns_cache=False, force_close=True, limit=256
        )
    )

    async def via_fetcher(domain: str) -> None:
        async with slots:
            await fetcher.fetch(domain)

    async def via_aiohttp(domain: str) -> None:
        async with slots, session.get(policy_url(domain), allow_redirects=False) as response:
            assert response.status == 200
            parse_policy(await response.read())

    async def via_streams(domain: str) -> None:
        async with slots:
            host = policy_host(domain)
            (_family, address), *_ = await client.addresses(host)
            reader, writer = await asyncio.open_connection(address, 443, ssl=context, server_hostname=host)
            writer.write(request.format(host).encode())
            data = b""
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
            writer.close()
            read_reply(data)

    (_family, address), *_ = await client.addresses(policy_host(fresh[0]))

    def read_reply(data: bytes) -> None:
        """What the hand-written ways do with a response: the status line, then the policy."""
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:40]
        parse_policy(body)

    async def blocking(domains: list) -> None:
        for domain in domains:
            host = policy_host(domain)
            with socket.create_connection((address, 443)) as plain, context.wrap_socket(
                plain, server_hostname=host
            ) as tls:
                tls.sendall(request.format(host).encode())
                data = b""
                while True:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
            read_reply(data)

    ways = {"fetcher": via_fetcher, "aiohttp": via_aiohttp, "streams": via_streams, "blocking": None}
    per_round = n // rounds
    pool = iter(fresh)
    cpu_ms = {name: [] for name in ways}
    for _ in range(rounds):
        for name, way in ways.items():
            domains = [next(pool) for _ in range(per_round)]
            cpu = time.process_time()
            if way is None:
                await blocking(domains)
            else:
                await asyncio.gather(*(way(d) for d in domains))
            cpu_ms[name].append((time.process_time() - cpu) / per_round * 1e3)
    await session.close()
    await fetcher.close()
    for name, figures in cpu_ms.items():
        figures.sort()
        print(
            f"{name:8} {figures[len(figures) // 2]:5.2f} ms CPU per fetch (median round; rounds"
            f" {' '.join(f'{f:.2f}' for f in figures)}; {per_round * rounds} fetches)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetches", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    import run

    work = pathlib.Path(tempfile.mkdtemp(prefix="mtasts-fetchcost-"))
    fresh = run.domains("fc", 4 * args.fetches)
    spec = work / "world.json"
    spec.write_text(json.dumps({"ca_file": str(work / "ca.pem"), "enforce": fresh}))
    world = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--serve-world", str(spec)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert world.stdout.readline().strip() == "world ready"
        asyncio.run(measure(str(work / "ca.pem"), fresh, args.fetches, args.rounds, args.concurrency))
    finally:
        world.terminate()
        world.wait()
        world.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
