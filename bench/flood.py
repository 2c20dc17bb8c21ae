"""Floods on loopback, with the daemon's RSS and open descriptors before, during and after.

    python bench/flood.py [--half-open 2000] [--seconds 8]

1. The publisher: N TCP connections that never send a ClientHello (from one address,
   then from N/8 addresses), and whether a normal client still gets the policy.
2. The socketmap: one client that pipelines requests whose replies are large and never
   reads them.

One daemon (`mtasts serve`, resolver and publisher in one process, as the quick start
runs them) on 127.0.0.1; certificates from trustme; nothing leaves loopback. Prints one
JSON object; the bounds it exercises are in README.md, "Limits".
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import ssl
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
PUBLISH_PORT, SOCKETMAP_PORT = 18443, 18461


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sample(pid: int) -> dict:
    return {"rss_mib": round(rss_kib(pid) / 1024, 1), "fds": fds(pid)}


def netstring(data: bytes) -> bytes:
    return b"%d:%s," % (len(data), data)


def fetch_policy(ca: object, source: str) -> bool:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    s = socket.socket()
    s.bind((source, 0))
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", PUBLISH_PORT))
        with ctx.wrap_socket(s, server_hostname="mta-sts.flood.example") as t:
            t.sendall(
                b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.flood.example\r\nConnection: close\r\n\r\n"
            )
            return t.recv(12) == b"HTTP/1.1 200"
    except OSError:
        return False


def half_open(pid: int, ca, count: int, sources: int) -> dict:
    before = sample(pid)
    held = []
    for i in range(count):
        s = socket.socket()
        s.bind((f"127.77.{(i % sources) // 250}.{(i % sources) % 250 + 1}", 0))
        try:
            s.connect(("127.0.0.1", PUBLISH_PORT))
        except OSError:
            s.close()
            continue
        held.append(s)
    time.sleep(1.0)
    during = sample(pid)
    served = fetch_policy(ca, "127.78.0.1")
    for s in held:
        s.close()
    time.sleep(11.0)  # past the handshake timeout
    return {
        "connections": len(held),
        "client_addresses": sources,
        "before": before,
        "during": during,
        "after": sample(pid),
        "normal_client_served": served,
    }


def seed_big_policy(path: pathlib.Path) -> None:
    """A cached enforce policy with 40 mx lines: a 28-byte request, a 1 KB reply."""
    sys.path.insert(0, str(ROOT / "src"))
    from mtasts.core import freshness
    from mtasts.core.policy import parse_policy
    from mtasts.store.sqlite import SqliteStore

    body = "version: STSv1\r\nmode: enforce\r\n" + "".join(f"mx: mx{i}.big.example\r\n" for i in range(40))
    policy = parse_policy((body + "max_age: 86400\r\n").encode())
    store = SqliteStore(str(path))
    store.put(freshness.learned(None, "big.example", policy, "1", time.time(), 0.5))
    store.close()


def never_reads(pid: int, seconds: float) -> dict:
    s = socket.create_connection(("127.0.0.1", SOCKETMAP_PORT))
    s.setblocking(False)
    burst = netstring(b"postfix big.example") * 4096
    before, sent, deadline = sample(pid), 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            # Whole requests only: a partial send continues where it stopped.
            sent += s.send(memoryview(burst)[sent % len(burst) :])
        except BlockingIOError:
            time.sleep(0.01)
    during = sample(pid)
    s.close()
    time.sleep(1.0)
    return {
        "seconds": seconds,
        "sent_mib": round(sent / 2**20, 1),
        "before": before,
        "during": during,
        "after": sample(pid),
    }


def main() -> None:
    import trustme

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--half-open", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="mtasts-flood-"))
    ca = trustme.CA()
    issued = ca.issue_cert("mta-sts.flood.example")
    issued.cert_chain_pems[0].write_to_path(str(work / "cert.pem"))
    issued.private_key_pem.write_to_path(str(work / "key.pem"))
    seed_big_policy(work / "cache.sqlite3")
    (work / "mtasts.toml").write_text(
        f'[socketmap]\nlisten = ["inet:127.0.0.1:{SOCKETMAP_PORT}"]\n[resolver]\nnameservers = ["127.0.0.1:9"]\n'
        f'timeout = 0.5\n[cache]\npath = "{work}/cache.sqlite3"\n[dane]\nmode = "off"\n[postfix]\nversion = "3.7.11"\n'
        f'[publish]\nlisten = ["127.0.0.1:{PUBLISH_PORT}"]\n[publish.domains."flood.example"]\nmx = ["mx.flood.example"]\n'
        f'cert = "{work}/cert.pem"\nkey = "{work}/key.pem"\n[log]\nlevel = "warning"\n'
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "mtasts", "serve", "-c", str(work / "mtasts.toml")],
        cwd=str(ROOT),
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", SOCKETMAP_PORT), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        result = {
            "idle": sample(daemon.pid),
            "half_open_one_address": half_open(daemon.pid, ca, args.half_open, 1),
            "half_open_many_addresses": half_open(daemon.pid, ca, args.half_open, max(1, args.half_open // 8)),
            "socketmap_never_reads": never_reads(daemon.pid, args.seconds),
        }
        print(json.dumps(result, indent=2))
    finally:
        daemon.terminate()
        daemon.wait(10)


if __name__ == "__main__":
    main()
