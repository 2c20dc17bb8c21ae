"""Client CPU per policy fetch: aiohttp (net/fetch.py) against bare asyncio TLS streams, one run.

    python bench/fetchcost.py [--fetches 600] [--concurrency 64]     # as root (ports 53, 443)

The world of bench/run.py (test DNS server and HTTPS policy host, trustme certificates) runs
in a child process, so the CPU measured (time.process_time of this process) is the client's
alone. Both ways resolve the policy host through mtasts's DnsClient (A and AAAA), connect
with the same SSL context, read the body and parse the policy; each fetches its own fresh
domains (no connection or session reuse, as for first lookups):

  aiohttp   PolicyFetcher.fetch, as a first lookup fetches
  streams   asyncio.open_connection(ssl=...), one HTTP/1.1 GET written by hand, read to EOF
            (no status, header or size checks: a floor for what a leaner HTTP client could cost)
  blocking  the same GET over a blocking socket and ssl.SSLSocket, one fetch after the other,
            no DNS (the address of the first answer): the floor without asyncio, i.e. the TLS
            handshake itself; compare with the others less their A/AAAA queries (~0.2 ms)
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


async def measure(ca_file: str, fresh: list, n: int, concurrency: int) -> None:
    import run

    from mtasts.config import Nameserver
    from mtasts.core.policy import parse_policy
    from mtasts.net.dns import DnsClient
    from mtasts.net.fetch import PolicyFetcher, make_ssl_context, policy_host

    client = DnsClient([Nameserver(run.DNS_IP, 53)], 5.0)
    fetcher = PolicyFetcher(client, 10.0, ca_file)
    await fetcher.start()
    context = make_ssl_context(ca_file)
    slots = asyncio.Semaphore(concurrency)

    async def via_aiohttp(domain: str) -> None:
        async with slots:
            await fetcher.fetch(domain)

    async def via_streams(domain: str) -> None:
        async with slots:
            host = policy_host(domain)
            (_family, address), *_ = await client.addresses(host)
            reader, writer = await asyncio.open_connection(address, 443, ssl=context, server_hostname=host)
            writer.write(f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                data += chunk
            writer.close()
            head, _, body = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head[:40]
            parse_policy(body)

    for name, way, domains in (("aiohttp", via_aiohttp, fresh[:n]), ("streams", via_streams, fresh[n:2 * n])):
        cpu, wall = time.process_time(), time.monotonic()
        await asyncio.gather(*(way(d) for d in domains))
        report(name, cpu, wall, len(domains))
    await fetcher.close()
    (_family, address), *_ = await client.addresses(policy_host(fresh[0]))
    cpu, wall = time.process_time(), time.monotonic()
    for domain in fresh[2 * n:]:
        host = policy_host(domain)
        with socket.create_connection((address, 443)) as plain, context.wrap_socket(plain, server_hostname=host) as tls:
            tls.sendall(f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:40]
        parse_policy(body)
    report("blocking", cpu, wall, n)


def report(name: str, cpu: float, wall: float, fetches: int) -> None:
    print(f"{name:8} {(time.process_time() - cpu) / fetches * 1e3:5.2f} ms CPU per fetch"
          f"  ({fetches} fetches, {time.monotonic() - wall:.2f} s wall)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fetches", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    import run

    work = pathlib.Path(tempfile.mkdtemp(prefix="mtasts-fetchcost-"))
    fresh = run.domains("fc", 3 * args.fetches)
    spec = work / "world.json"
    spec.write_text(json.dumps({"ca_file": str(work / "ca.pem"), "enforce": fresh}))
    world = subprocess.Popen([sys.executable, str(ROOT / "bench" / "run.py"), "--serve-world", str(spec)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert world.stdout.readline().strip() == "world ready"
        asyncio.run(measure(str(work / "ca.pem"), fresh, args.fetches, args.concurrency))
    finally:
        world.terminate()
        world.wait()
        world.stdout.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
